"""Workers: processes that take trials from a study's stages until the plan is done.

A worker is a loop over the stages: run a trial while the stage has budget
left (or a retry waiting), wait while other workers finish the stage's last
trials, then go on to the next stage. Workers share nothing but the storage,
so one started on another machine against the same storage URL joins in, and
re-running the command resumes a study.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from tunekit.errors import TunekitError

from ._liveness import reap_stale
from ._stages import StagedSearch, count_trials, summary_data
from ._trial import run_trial_here, run_trial_torchrun
from ._validate import SearchContext


def run_worker(
    ctx: SearchContext,
    *,
    max_trials: int | None = None,
    poll_s: float = 0.5,
    stop: threading.Event | None = None,
) -> int:
    """Runs trials until every stage is done (or ``max_trials`` here, or ``stop`` is set).

    Returns how many trials this worker started.
    """
    ss = ctx.search
    spec = ctx.study.liveness
    started = failures = 0
    for stage in ss.stages:
        study = ss.optuna_study(stage)
        ss.space(stage)
        ss.seed_best(stage)
        while stop is None or not stop.is_set():
            reap_stale(study, ss.storage, spec)
            c = count_trials(study.get_trials(deepcopy=False))
            if c.waiting > 0 or (c.accounted < stage.spec.trials and ss.budget_left()):
                if ctx.study.trial_gpus > 1:
                    rc = run_trial_torchrun(ctx, stage)
                    failures = failures + 1 if rc != 0 else 0
                    if rc == 2:
                        # Rank 0 printed the user's mistake (missing data, a bad value) already.
                        raise TunekitError(
                            "a DDP trial stopped on the error above; fix it and run again",
                            field="search",
                        )
                    if failures >= 3:
                        raise RuntimeError(
                            f"three DDP trials in a row exited with code {rc}; see their output above"
                        )
                else:
                    run_trial_here(ctx, stage)
                started += 1
                if max_trials is not None and started >= max_trials:
                    return started
            elif c.running > 0:
                # Others are finishing this stage; the next one needs their results.
                time.sleep(poll_s)
            else:
                break
        if not ss.budget_left() or (stop is not None and stop.is_set()):
            break
    return started


def write_summary(ctx: SearchContext) -> dict[str, Any]:
    """Writes ``<study_dir>/summary.json`` (atomically) and returns it.

    Beside :func:`summary_data`'s fields: ``complete`` (every stage done, or the
    budget spent), ``unfinished`` (what is left when it is not) and ``retries``
    (see :func:`retries`).
    """
    data = summary_data(ctx.search, ctx.study_dir, ctx.storage_desc)
    left = unfinished(ctx.search)
    data["complete"] = left is None
    data["unfinished"] = left
    data["retries"] = retries(ctx.search)
    ctx.study_dir.mkdir(parents=True, exist_ok=True)
    tmp = ctx.study_dir / ".summary.json.tmp"
    tmp.write_text(json.dumps(data, indent=2, allow_nan=True))
    tmp.replace(ctx.study_dir / "summary.json")
    return data


def unfinished(search: StagedSearch) -> str | None:
    """What is left of the plan, in words; None when every stage is done or the budget is spent.

    This is the worker loop's own rule (:func:`run_worker`): a stage is done when
    its planned trials are accounted for and none is running or waiting.
    """
    for stage in search.stages:
        c = search.counts(stage)
        finished = c.complete + c.pruned + c.failed - c.retried
        if c.running or c.waiting:
            parts = [f"{c.running} left running"] if c.running else []
            parts += [f"{c.waiting} waiting to run"] if c.waiting else []
            return (
                f"stage {stage.name} has {finished} of {stage.spec.trials} trials finished, "
                + " and ".join(parts)
            )
        budget = search.budget_left()
        if c.accounted < stage.spec.trials and budget:
            return f"stage {stage.name} has {finished} of {stage.spec.trials} trials finished"
        if not budget:
            return None
    return None


def failure_kind(reason: str | None) -> str:
    """A failed trial's reason in a few words: ``worker killed``, ``interrupted`` or the reason."""
    if reason is None or reason.startswith("worker silent"):
        # Optuna's RDB heartbeat fails a silent trial without a reason; tunekit's says "silent".
        return "worker killed"
    if reason.startswith("interrupted"):
        return "interrupted"
    line = reason.strip().splitlines()[0] if reason.strip() else "failed"
    return line if len(line) <= 80 else line[:77] + "..."


def retries(search: StagedSearch) -> list[dict[str, Any]]:
    """Each failed trial whose parameters ran again: its stage, number, why, and its retry's number.

    A retry's ``retry_history`` (Optuna's retry callback) lists the trials it replaces, the
    one it replaces directly last. That is the latest before the retry itself: a process
    whose storage let Optuna's callback append to a cached trial's list sees later ones.
    """
    out: list[dict[str, Any]] = []
    for stage in search.stages:
        trials = sorted(search.trials(stage), key=lambda t: t.number)
        by_number = {t.number: t for t in trials}
        for t in trials:
            earlier = [n for n in t.system_attrs.get("retry_history") or [] if n < t.number]
            if not earlier:
                continue
            failed = by_number.get(earlier[-1])
            reason = failed.user_attrs.get("failure_reason") if failed is not None else None
            out.append(
                {
                    "stage": stage.name,
                    "trial": earlier[-1],
                    "reason": failure_kind(reason),
                    "retried_as": t.number,
                }
            )
    return out
