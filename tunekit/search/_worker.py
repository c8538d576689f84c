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
from ._python import check_first_stage
from ._stages import Stage, StagedSearch, summary_data
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

    Within a stage, each trial goes to the cell with the fewest accounted trials
    (the first cell in :func:`plan_cells` order on a tie) among those with
    trials left or waiting, so workers on any number of machines fill the cells
    evenly; a stage is done when every cell has its planned trials and none is
    running. Returns how many trials this worker started.
    """
    ss = ctx.search
    started = failures = 0
    for stage in ss.stages:
        units = ss.units(stage)
        for unit in units:
            ss.prepare(unit)
        while stop is None or not stop.is_set():
            chosen = _next_unit(ctx, units)
            if chosen is not None:
                unit = ss.training_unit(chosen)
                if ctx.study.trial_gpus > 1:
                    rc = run_trial_torchrun(ctx, unit)
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
                elif not run_trial_here(ctx, unit):
                    continue  # another worker took the cell's last trial; look again
                started += 1
                if max_trials is not None and started >= max_trials:
                    return started
            elif any(ss.counts(u).running for u in units):
                # Others are finishing this stage; the next one needs their results.
                time.sleep(poll_s)
            else:
                break
        stopped = stop is not None and stop.is_set()
        if stage.index == 0 and ctx.study.objective is not None and not stopped:
            check_first_stage(ctx)
        if not ss.budget_left() or stopped:
            break
    return started


def _next_unit(ctx: SearchContext, units: list[Stage]) -> Stage | None:
    """The cell that takes the next trial: a waiting trial (a retry, a seeded or repeat
    trial) or budget left, fewest accounted trials first; None when no cell has either."""
    ss = ctx.search
    budget: bool | None = None
    open_: list[tuple[int, int, Stage]] = []
    for unit in units:
        study = ss.optuna_study(unit)
        # A trial is stale only after grace_s of silence: looking for one more often than
        # every heartbeat finds nothing new, and costs a read of every trial each time.
        if ss.due(unit, ctx.study.liveness.heartbeat_s):
            reap_stale(study, ss.storage, ctx.study.liveness)
        c = ss.counts(unit)
        more = False
        # A repeat cell samples nothing: it runs the trials its stage enqueued, and no others.
        if not unit.spec.is_repeat and c.accounted < ss.planned(unit):
            budget = ss.budget_left() if budget is None else budget
            more = budget
        if c.waiting > 0 or more:
            open_.append((c.accounted, unit.cell.index, unit))
    return min(open_, key=lambda o: o[:2])[2] if open_ else None


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
    each of its cells has its planned trials accounted for and none is running or
    waiting. The first cell with something left is named (``stage coarse cell
    length_multiplier=2 has ...``).
    """
    for stage in search.stages:
        for unit in search.units(stage):
            c = search.counts(unit)
            planned = search.planned(unit)
            where = f"stage {stage.name}" + (f" cell {unit.cell.key}" if unit.cell.key else "")
            finished = c.complete + c.pruned + c.failed - c.retried
            if c.running or c.waiting:
                parts = [f"{c.running} left running"] if c.running else []
                parts += [f"{c.waiting} waiting to run"] if c.waiting else []
                return f"{where} has {finished} of {planned} trials finished, " + " and ".join(
                    parts
                )
            budget = search.budget_left()
            if not budget:
                return None
            if c.accounted < planned:
                return f"{where} has {finished} of {planned} trials finished"
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
    for unit in search.all_units():
        trials = sorted(search.trials(unit), key=lambda t: t.number)
        by_number = {t.number: t for t in trials}
        for t in trials:
            earlier = [n for n in t.system_attrs.get("retry_history") or [] if n < t.number]
            if not earlier:
                continue
            failed = by_number.get(earlier[-1])
            reason = failed.user_attrs.get("failure_reason") if failed is not None else None
            row = {
                "stage": unit.name,
                "trial": earlier[-1],
                "reason": failure_kind(reason),
                "retried_as": t.number,
            }
            out.append({**row, "cell": unit.cell.key} if unit.cell.key else row)
    return out
