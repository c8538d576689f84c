"""Top-k trial ensembles: the k best finished trials of an Optuna study, as members.

A tunekit search stores each trial's run directory in the trial's
``user_attrs["run_dir"]``; a staged search keeps one Optuna study per stage,
named ``<study>/<stage>`` or similar, and all of them are pooled here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tunekit.errors import TunekitError, did_you_mean, first_line
from tunekit.search import open_storage

from ._members import Member, RunContext, check_compatible, checkpoint_member, open_run


@dataclass
class RankedTrial:
    """A finished trial with its value and run directory."""

    study: str
    number: int
    value: float
    run_dir: Path


def _matching_studies(storage: BaseStorage, name: str) -> list[optuna.study.StudySummary]:
    try:
        summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    except Exception as exc:  # sqlalchemy/journal errors vary; all mean "cannot read it"
        reason = first_line(exc)
        raise TunekitError(
            f"cannot read the study storage: {reason[:160]}", field="--storage"
        ) from None
    # The study itself, or the stages of a staged search (name + separator + stage).
    pattern = re.compile(rf"^{re.escape(name)}(?:[/:._-].+)?$")
    found = [s for s in summaries if pattern.match(s.study_name)]
    if not found:
        names = sorted(s.study_name for s in summaries)
        listing = ", ".join(names) if names else "(the storage holds no studies)"
        raise TunekitError(
            f"no study {name!r} in the storage{did_you_mean(name, names)}; studies there: {listing}",
            field="--study",
        )
    return found


def rank_trials(storage: str, study: str) -> list[RankedTrial]:
    """Every finished trial of ``study`` (and its stages) that has a run directory, best first."""
    # A missing journal file is a typo here, not a study to start: opening it would create it.
    store = open_storage(storage, Path.cwd(), create=False)
    summaries = _matching_studies(store, study)
    directions = {s.direction for s in summaries}
    if len(directions) > 1:
        raise TunekitError(
            f"the stages of study {study!r} optimise in different directions", field="--study"
        )
    maximize = directions.pop() == optuna.study.StudyDirection.MAXIMIZE
    ranked: list[RankedTrial] = []
    for s in summaries:
        trials: list[FrozenTrial] = optuna.load_study(
            study_name=s.study_name, storage=store
        ).get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        for t in trials:
            run_dir = t.user_attrs.get("run_dir")
            if t.value is not None and run_dir:
                ranked.append(RankedTrial(s.study_name, t.number, float(t.value), Path(run_dir)))
    ranked.sort(key=lambda r: -r.value if maximize else r.value)
    return ranked


def topk_members(
    storage: str, study: str, k: int, *, checkpoint: str = "best", device: str = "cpu"
) -> tuple[list[Member], list[RunContext]]:
    """The k best trials' checkpoints as members, with their rebuilt runs (for data and metadata).

    A study with fewer than ``k`` complete trials gives them all; compare the number of
    members with ``k`` to tell (``tunekit ensemble`` warns and records both in the file).
    """
    if k < 1:
        raise TunekitError(f"value {k} is not allowed: --top-k must be 1 or more", field="--top-k")
    ranked = rank_trials(storage, study)
    if not ranked:
        raise TunekitError(
            f"study {study!r} has no finished trial with a run directory (user_attrs['run_dir'])",
            field="--study",
        )
    chosen = ranked[:k]
    contexts: list[tuple[str, RunContext]] = []
    members: list[Member] = []
    for r in chosen:
        label = f"trial {r.number}" + (f" ({r.study})" if r.study != study else "")
        if not r.run_dir.is_dir():
            raise TunekitError(
                f"the run directory of {label} is missing ({os.fspath(r.run_dir)}); it was moved or deleted",
                field="--study",
            )
        ctx = open_run(r.run_dir, device)
        contexts.append((label, ctx))
        member = checkpoint_member(ctx, checkpoint, name=label)
        member.metrics.setdefault("objective", r.value)
        members.append(member)
    check_compatible(contexts)
    return members, [c for _, c in contexts]
