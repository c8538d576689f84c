"""Coarse → fine → further rounds: each stage is one Optuna study on the shared storage.

A stage's study is named ``<study>.<stage>`` so that its pruner compares
trials of the same length, its sampler sees only its own ranges, and
optuna-dashboard lists the stages side by side. A stage's ranges are computed
once from the previous stage's finished trials and stored in the stage's
study (user attribute ``tunekit:space``), so every worker, on any machine and
after any restart, samples from the same ranges.
"""

from __future__ import annotations

import json
import math
import re
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from ._builders import build_pruner, build_sampler
from ._space import EdgeFlag, Range, Space, refine_space, space_from_specs
from ._study import RefineSpec, StageSpec, Study

SPACE_ATTR = "tunekit:space"
FLAGS_ATTR = "tunekit:flags"
STARTED_ATTR = "tunekit:started"
SEEDED_ATTR = "tunekit:seeded"


@dataclass(frozen=True)
class Stage:
    """One planned round: its place in the plan, its spec and its study name."""

    index: int
    spec: StageSpec
    study_name: str

    @property
    def name(self) -> str:
        return self.spec.name


def plan_stages(study: Study) -> list[Stage]:
    """The listed stages, then ``rounds.extra`` more copies of the last one (``fine2``, ...)."""
    specs = list(study.stages)
    last = specs[-1]
    for k in range(study.rounds.extra):
        refine = last.refine or RefineSpec()
        specs.append(last.model_copy(update={"name": f"{last.name}{k + 2}", "refine": refine}))
    return [Stage(i, s, f"{study.name}.{s.name}") for i, s in enumerate(specs)]


@dataclass(frozen=True)
class StageCounts:
    """Where a stage's trials stand; ``accounted`` is what counts against its budget."""

    complete: int
    pruned: int
    failed: int
    running: int
    waiting: int
    retried: int  # failed trials whose parameters were enqueued again

    @property
    def accounted(self) -> int:
        return (
            self.complete + self.pruned + self.running + self.waiting + self.failed - self.retried
        )


def count_trials(trials: list[FrozenTrial]) -> StageCounts:
    """Counts by state; a failed trial that was retried counts through its retry instead."""
    retried = set()
    for t in trials:
        retried.update(t.system_attrs.get("retry_history", []))
    failed = [t for t in trials if t.state == TrialState.FAIL]
    return StageCounts(
        complete=sum(t.state == TrialState.COMPLETE for t in trials),
        pruned=sum(t.state == TrialState.PRUNED for t in trials),
        failed=len(failed),
        running=sum(t.state == TrialState.RUNNING for t in trials),
        waiting=sum(t.state == TrialState.WAITING for t in trials),
        retried=sum(t.number in retried for t in failed),
    )


def ranked(trials: list[FrozenTrial], direction: str) -> list[FrozenTrial]:
    """Complete trials, best first (pruned ones are not candidates: they stopped early)."""
    done = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
    ]
    return sorted(done, key=lambda t: float(t.value or 0.0), reverse=direction == "maximize")


def furthest_first(trials: list[FrozenTrial], direction: str) -> list[FrozenTrial]:
    """Complete trials best first, then pruned ones by how far they got, then by their value there.

    Successive halving lets a ninth of a stage's trials run to the end; refining
    around those two or three alone would throw away what the rungs learned. A
    trial that survived to a later rung beat the others at every rung before it,
    so it is the next candidate, as in Hyperband's own ranking.
    """
    done = ranked(trials, direction)
    sign = 1.0 if direction == "maximize" else -1.0
    pruned: list[tuple[int, float, FrozenTrial]] = []
    for t in trials:
        step = t.last_step
        # A diverged trial (failure_reason) is not a place to refine around.
        if t.state != TrialState.PRUNED or t.user_attrs.get("failure_reason") or step is None:
            continue
        value = t.intermediate_values[step]
        if math.isfinite(value):
            pruned.append((step, sign * value, t))
    pruned.sort(key=lambda p: (p[0], p[1]), reverse=True)
    return done + [t for _, _, t in pruned]


# Metrics that are the fraction of validation items scored right: their noise is binomial.
_PROPORTION = re.compile(r"(^|/)(top\d+|acc|accuracy)$")


def within_noise(trials: list[FrozenTrial], metric: str, direction: str) -> dict[str, Any] | None:
    """The complete trials that score within two standard errors of the best one.

    A top-1 measured on n items has a standard error of sqrt(p(1-p)/n); trials
    closer to the best than two of them cannot be told apart on this validation
    set, and a rerun with another seed reorders them. None for metrics that are
    not such a fraction (a loss, AP) or when the validation size is unknown.
    """
    if not _PROPORTION.search(metric):
        return None
    top = ranked(trials, direction)
    n = top[0].user_attrs.get("val_size") if top else None
    if not n:
        return None
    best = float(top[0].value or 0.0)
    # At 0 or 1 the formula gives 0; half an item of doubt keeps the band honest.
    p = min(max(best, 0.5 / n), 1 - 0.5 / n)
    se = math.sqrt(p * (1 - p) / n)
    close = [t.number for t in top if abs(float(t.value or 0.0) - best) <= 2 * se + 1e-12]
    return {"val_size": int(n), "se": se, "trials": close}


class StagedSearch:
    """A study's stages on one storage: their Optuna studies, ranges and progress.

    Every worker builds one of these; they agree through the storage alone.
    """

    def __init__(
        self,
        study: Study,
        storage: BaseStorage,
        *,
        base_space: Space | None = None,
    ) -> None:
        self.study = study
        self.storage = storage
        self.stages = plan_stages(study)
        self.base_space = base_space if base_space is not None else space_from_specs(study.space)
        self._studies: dict[int, optuna.Study] = {}
        self._study_ids: dict[int, int] = {}
        # What never changes once stored: read once per worker, not once per trial.
        self._spaces: dict[int, Space] = {}
        self._started_at: float | None = None

    # -- the Optuna study of each stage -------------------------------------

    def optuna_study(self, stage: Stage) -> optuna.Study:
        if stage.index not in self._studies:
            spec = stage.spec
            seed = self.study.seed * 1000 + stage.index
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                s = optuna.create_study(
                    storage=self.storage,
                    study_name=stage.study_name,
                    direction=self.study.direction,
                    sampler=build_sampler(spec.sampler, seed, n_startup=max(2, spec.trials // 4)),
                    pruner=build_pruner(spec.pruner, spec.steps),
                    load_if_exists=True,
                )
            self._studies[stage.index] = s
        return self._studies[stage.index]

    def existing(self, stage: Stage) -> optuna.Study | None:
        """The stage's study if some worker has created it (without creating it)."""
        if stage.index not in self._studies:
            try:
                # A study once created stays: only the first sighting asks the storage.
                self.storage.get_study_id_from_name(stage.study_name)
            except KeyError:
                return None
        return self.optuna_study(stage)

    def trial_id(self, stage: Stage, number: int) -> int:
        """The storage's id of the stage's trial ``number`` (what heartbeats and retries use)."""
        if stage.index not in self._study_ids:
            self._study_ids[stage.index] = self.storage.get_study_id_from_name(stage.study_name)
        return self.storage.get_trial_id_from_study_id_trial_number(
            self._study_ids[stage.index], number
        )

    def trials(self, stage: Stage) -> list[FrozenTrial]:
        s = self.existing(stage)
        return s.get_trials(deepcopy=False) if s is not None else []

    def counts(self, stage: Stage) -> StageCounts:
        return count_trials(self.trials(stage))

    # -- ranges -------------------------------------------------------------

    def space(self, stage: Stage) -> Space:
        """The stage's ranges: stored, or computed now from the previous stage and stored."""
        if stage.index in self._spaces:
            return self._spaces[stage.index]
        s = self.optuna_study(stage)
        flags: list[EdgeFlag]
        stored = s.user_attrs.get(SPACE_ATTR)
        if stored is not None:
            self._spaces[stage.index] = {n: Range.from_dict(d) for n, d in stored.items()}
            return self._spaces[stage.index]
        if stage.index == 0:
            space, flags = self.base_space, []
            if STARTED_ATTR not in s.user_attrs:
                s.set_user_attr(STARTED_ATTR, time.time())
        else:
            prev = self.stages[stage.index - 1]
            prev_space = self.space(prev)
            if stage.spec.refine is None:
                space, flags = prev_space, []
            else:
                top = furthest_first(self.trials(prev), self.study.direction)
                top = top[: stage.spec.refine.top_k]
                space, flags = refine_space(prev_space, [t.params for t in top], stage.spec.refine)
        # Every worker computes the same ranges from the same finished trials, so a race
        # between two writers stores the same value.
        s.set_user_attr(SPACE_ATTR, {name: r.to_dict() for name, r in space.items()})
        s.set_user_attr(
            FLAGS_ATTR, [f.__dict__ | {"old": list(f.old), "new": list(f.new)} for f in flags]
        )
        return space

    def flags(self, stage: Stage) -> list[EdgeFlag]:
        s = self.existing(stage)
        raw = s.user_attrs.get(FLAGS_ATTR, []) if s is not None else []
        return [
            EdgeFlag(f["param"], f["side"], f["best"], tuple(f["old"]), tuple(f["new"]))
            for f in raw
        ]

    def seed_best(self, stage: Stage) -> None:
        """Enqueues the previous stage's best parameters as this stage's first trial (once).

        Not when this stage trains as the previous one did (same epochs, same
        overrides; further rounds, or a fine stage that only narrows ranges): the
        trial would repeat the best one, the same run under the same seed, and
        spend a whole trial to learn nothing.
        """
        if stage.index == 0 or not stage.spec.seed_best:
            return
        prev = self.stages[stage.index - 1].spec
        if (stage.spec.epochs, stage.spec.steps, stage.spec.set) == (
            prev.epochs,
            prev.steps,
            prev.set,
        ):
            return
        s = self.optuna_study(stage)
        if s.user_attrs.get(SEEDED_ATTR) or s.get_trials(deepcopy=False):
            return
        s.set_user_attr(SEEDED_ATTR, True)
        best = ranked(self.trials(self.stages[stage.index - 1]), self.study.direction)
        if not best:
            return
        space = self.space(stage)
        params = {k: v for k, v in best[0].params.items() if k in space and space[k].contains(v)}
        if params:
            s.enqueue_trial(params, user_attrs={"seeded_from": best[0].number})

    # -- budget -------------------------------------------------------------

    def started_at(self) -> float | None:
        if self._started_at is None:
            s = self.existing(self.stages[0])
            self._started_at = s.user_attrs.get(STARTED_ATTR) if s is not None else None
        return self._started_at

    def total_trials(self) -> int:
        return sum(self.counts(st).accounted for st in self.stages)

    def budget_left(self) -> bool:
        r = self.study.rounds
        if r.max_trials is not None and self.total_trials() >= r.max_trials:
            return False
        started = self.started_at()
        return not (
            r.time_budget_s is not None
            and started is not None
            and time.time() - started > r.time_budget_s
        )

    # -- results ------------------------------------------------------------

    def all_trials(self) -> list[tuple[Stage, FrozenTrial]]:
        return [(st, t) for st in self.stages for t in self.trials(st)]

    def best(self) -> tuple[Stage, FrozenTrial] | None:
        pairs = [
            (st, t) for st in self.stages for t in ranked(self.trials(st), self.study.direction)
        ]
        if not pairs:
            return None
        sign = 1.0 if self.study.direction == "maximize" else -1.0
        return max(pairs, key=lambda p: (sign * float(p[1].value or 0.0), p[0].index))


def stage_data(search: StagedSearch, st: Stage, trials: list[FrozenTrial]) -> dict[str, Any]:
    """One stage as plain values: its settings, stored ranges, edge flags and trial counts."""
    s = search.existing(st)
    stored = s.user_attrs.get(SPACE_ATTR) if s is not None else None
    return {
        "name": st.name,
        "study_name": st.study_name,
        "sampler": st.spec.sampler,
        "pruner": st.spec.pruner.name,
        "epochs": st.spec.epochs,
        "steps": st.spec.steps,
        "trials_planned": st.spec.trials,
        "ranges": dict(stored or {}),
        "edge_flags": [f.message() for f in search.flags(st)],
        "counts": asdict(count_trials(trials)),
        "noise": within_noise(trials, search.study.metric, search.study.direction),
    }


def summary_data(search: StagedSearch, study_dir: Path, storage_desc: str) -> dict[str, Any]:
    """The study's summary as plain values (written as summary.json, rendered by the CLI)."""
    study = search.study
    stages = []
    totals: dict[str, int] = {}
    for st in search.stages:
        trials = search.trials(st)
        row = stage_data(search, st, trials)
        for k, v in row["counts"].items():
            totals[k] = totals.get(k, 0) + v
        top = ranked(trials, study.direction)
        row["best"] = _trial_dict(top[0]) if top else None
        stages.append(row)
    best = search.best()
    scientific = {}
    for name, spec in study.space.items():
        if spec.role != "scientific":
            continue
        per: dict[str, Any] = {}
        for _, t in search.all_trials():
            if t.state != TrialState.COMPLETE or name not in t.params or t.value is None:
                continue
            key = json.dumps(t.params[name])
            cur = per.get(key)
            better = cur is None or (
                t.value > cur["value"] if study.direction == "maximize" else t.value < cur["value"]
            )
            if better:
                per[key] = _trial_dict(t)
        scientific[name] = per
    return {
        "study": study.name,
        "metric": study.metric,
        "direction": study.direction,
        "study_dir": str(study_dir),
        "storage": storage_desc,
        "best": ({"stage": best[0].name, **_trial_dict(best[1])} if best else None),
        "stages": stages,
        "counts": totals,
        "best_by_scientific": scientific,
    }


def _trial_dict(t: FrozenTrial) -> dict[str, Any]:
    return {
        "trial": t.number,
        "value": t.value,
        "params": dict(t.params),
        "run_dir": t.user_attrs.get("run_dir"),
        "epochs_run": t.user_attrs.get("epochs_run"),
    }
