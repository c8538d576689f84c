"""One trial: ask the stage's study, train the trial's recipe, tell the result.

A trial over several processes runs under torchrun: rank 0 owns the Optuna
trial and broadcasts its parameters to the other ranks.
"""

from __future__ import annotations

import math
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from tunekit.core import broadcast_object, init_distributed, launch, shutdown_distributed
from tunekit.errors import ConfigError, TunekitError

from ._liveness import Heartbeat, retry_trial
from ._objective import PruningHook, trial_recipe
from ._python import Objective, final_value, objective_params, objective_trial
from ._signals import Stopped
from ._space import sample
from ._stages import SURPLUS_ATTR, Stage
from ._storage import one_write
from ._validate import SearchContext


def execute_trial(
    ctx: SearchContext, stage: Stage, trial: optuna.Trial | None
) -> TrialState | None:
    """Trains one trial (on every rank under DDP; ``trial`` is None except on rank 0).

    Returns the state the trial was told (rank 0), or None on other ranks.
    """
    if ctx.study.objective is not None:
        if ctx.objective is None or trial is None:
            # open_search(create=False) opens a study to read it and leaves its function out.
            raise TunekitError(
                f"this search has not imported {ctx.study.objective!r}, so it cannot run its "
                "trials; open it with open_search(..., create=True) or tunekit.search.run",
                file=str(ctx.study_file),
                field="objective",
            )
        return _execute_objective(ctx, stage, trial, ctx.objective)
    # Here, not at the top: a study over a Python objective never pays for importing it.
    from tunekit.run import train

    if trial is not None:
        params, number = sample(trial, ctx.search.space(stage)), trial.number
    else:
        params, number = {}, -1
    params, number = broadcast_object((params, number))
    run_dir = _run_dir(ctx, stage, number)
    recipe = trial_recipe(ctx.study, ctx.recipe_data, stage.spec, params, file=str(ctx.recipe_path))
    hook = PruningHook(trial, ctx.study.metric, stage.spec.pruner.metric)
    if trial is not None:
        _mark(ctx, stage, trial, run_dir)
    try:
        summary = train(
            recipe, out=run_dir, hooks=[hook], progress=False, file=str(ctx.recipe_path)
        )
    except FloatingPointError as exc:
        # diagnostics' guard: the loss went non-finite. The parameters are bad, not the worker:
        # prune (the sampler learns this region is poor) and record why.
        return _tell(ctx, stage, trial, TrialState.PRUNED, reason=f"non-finite loss: {exc}")
    except (KeyboardInterrupt, Exception) as exc:
        return _failed(ctx, stage, trial, exc)
    if trial is None:
        return None
    attrs = {
        "epochs_run": summary["epochs_run"],
        "stop_reason": summary["stop_reason"],
        "wall_time_s": summary["wall_time_s"],
        "val_size": summary.get("val_size"),
    }
    if hook.reason is not None:
        return _tell(ctx, stage, trial, TrialState.PRUNED, reason=hook.reason, attrs=attrs)
    if hook.pruned_at is not None:
        return _tell(ctx, stage, trial, TrialState.PRUNED, attrs=attrs)
    value = summary["best"]["value"]
    if value is None or not math.isfinite(value):
        reason = f"no finite {ctx.study.metric} was measured"
        return _tell(ctx, stage, trial, TrialState.FAIL, reason=reason, attrs=attrs)
    return _tell(ctx, stage, trial, TrialState.COMPLETE, value=float(value), attrs=attrs)


def _failed(
    ctx: SearchContext, stage: Stage, trial: optuna.Trial | None, exc: BaseException
) -> TrialState:
    """Tells the trial that raised ``exc`` failed, for a recipe or an objective alike.

    Called inside the ``except`` block: an interrupt is failed and retried (it runs again
    on resume) and re-raised, a user's mistake (TunekitError) is failed and re-raised, any
    other crash is failed and retried (one trial must not end the study). Ranks other than
    0 (no trial) only re-raise.
    """
    if trial is None:
        raise
    if isinstance(exc, KeyboardInterrupt):
        how = exc.args[0] if isinstance(exc, Stopped) else "Ctrl-C"
        _tell(
            ctx,
            stage,
            trial,
            TrialState.FAIL,
            reason=f"interrupted ({how}); will run again on resume",
        )
        _retry(ctx, stage, trial)
        raise
    if isinstance(exc, TunekitError):
        _tell(ctx, stage, trial, TrialState.FAIL, reason=str(exc))
        raise
    _tell(ctx, stage, trial, TrialState.FAIL, reason=f"{type(exc).__name__}: {exc}")
    _retry(ctx, stage, trial)
    return TrialState.FAIL


def _run_dir(ctx: SearchContext, stage: Stage, number: int) -> Path:
    # Each cell numbers its trials from 0: its own folder keeps them apart.
    return ctx.study_dir / "trials" / stage.name / stage.dir_name / f"trial-{number:04d}"


def _mark(ctx: SearchContext, stage: Stage, trial: optuna.Trial, run_dir: Path) -> None:
    attrs: dict[str, Any] = {
        "run_dir": str(run_dir),
        "stage": stage.name,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }
    if trial.user_attrs.get("failure_reason"):
        # A retry inherits the failed trial's attributes; the reason was that trial's.
        attrs["failure_reason"] = None
    with one_write(trial.storage, ctx.search.trial_id(stage, trial.number)):
        for key, value in attrs.items():
            trial.set_user_attr(key, value)


def _execute_objective(
    ctx: SearchContext, stage: Stage, trial: optuna.Trial, fn: Objective
) -> TrialState | None:
    """Calls the study's Python objective for one trial, and tells the outcome as a recipe
    trial's: pruned when it raised TrialPruned, failed (and retried) when it raised."""
    space = ctx.search.space(stage)
    run_dir = _run_dir(ctx, stage, trial.number)
    # The sampled values and the trial's marks in one journal write: nothing reads them
    # back before the function runs (Optuna's trial keeps its own copy of its values).
    with one_write(trial.storage, ctx.search.trial_id(stage, trial.number)):
        params, seed = objective_params(ctx.study, stage, sample(trial, space))
        _mark(ctx, stage, trial, run_dir)
    handle = objective_trial(stage, trial, seed=seed, run_dir=run_dir)
    started = time.perf_counter()
    try:
        returned = fn(params, handle)
    except optuna.TrialPruned:
        return _tell(ctx, stage, trial, TrialState.PRUNED, reason=handle.reason)
    except (KeyboardInterrupt, Exception) as exc:
        return _failed(ctx, stage, trial, exc)
    attrs = {"wall_time_s": time.perf_counter() - started}
    value, reason = final_value(returned, handle)
    if value is None:
        return _tell(ctx, stage, trial, TrialState.FAIL, reason=reason, attrs=attrs)
    return _tell(ctx, stage, trial, TrialState.COMPLETE, value=value, attrs=attrs)


def _tell(
    ctx: SearchContext,
    stage: Stage,
    trial: optuna.Trial | None,
    state: TrialState,
    *,
    value: float | None = None,
    reason: str | None = None,
    attrs: dict[str, Any] | None = None,
) -> TrialState | None:
    """Tells the trial's outcome, after its user attributes ``attrs`` and ``failure_reason``."""
    if trial is None:
        return None
    study = ctx.search.optuna_study(stage)
    attrs = {**(attrs or {}), **({"failure_reason": reason} if reason is not None else {})}
    try:
        # The attributes and the outcome in one journal write, not one each.
        with one_write(trial.storage, ctx.search.trial_id(stage, trial.number)):
            for key, v in attrs.items():
                trial.set_user_attr(key, v)
            study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    except UpdateFinishedTrialError:
        # Another worker declared this trial dead (it missed its heartbeats) and retried it.
        return None
    return state


def _retry(ctx: SearchContext, stage: Stage, trial: optuna.Trial) -> None:
    search = ctx.search
    frozen = search.storage.get_trial(search.trial_id(stage, trial.number))
    if frozen.state == TrialState.FAIL:
        retry_trial(search.optuna_study(stage), frozen, ctx.study.liveness.max_retry)


def _ask(study: optuna.Study) -> optuna.Trial:
    with warnings.catch_warnings():
        # Optuna warns that its RDB heartbeat expects Study.optimize; tunekit beats itself
        # (see _liveness.Heartbeat), so ask/tell is covered.
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        return study.ask()


def claim_trial(ctx: SearchContext, stage: Stage) -> optuna.Trial | None:
    """Asks the cell's study for a trial; None when another worker took the cell's last one.

    The extra trial is told failed at once, marked so that no count or report sees it,
    with its reason for anyone reading the storage with Optuna's own tools.
    """
    search = ctx.search
    study = search.optuna_study(stage)
    search.space(stage)  # a grid stage's sampler is built from the stage's ranges, before asking
    trial = _ask(study)
    if not search.over_plan(stage, trial.number):
        return trial
    search.storage.set_trial_system_attr(search.trial_id(stage, trial.number), SURPLUS_ATTR, True)
    trial.set_user_attr(
        "failure_reason", "not run: another worker took the last trial of this cell's plan"
    )
    study.tell(trial, state=TrialState.FAIL)
    return None


def run_claimed(ctx: SearchContext, stage: Stage, trial: optuna.Trial) -> TrialState | None:
    """Trains a claimed trial in this process, beating its heartbeat."""
    search = ctx.search
    trial_id = search.trial_id(stage, trial.number)
    with Heartbeat(search.optuna_study(stage), search.storage, trial_id, ctx.study.liveness):
        return execute_trial(ctx, stage, trial)


def run_trial_here(ctx: SearchContext, stage: Stage) -> bool:
    """Claims a trial of the cell and trains it in this process; False when none was left."""
    trial = claim_trial(ctx, stage)
    if trial is None:
        return False
    run_claimed(ctx, stage, trial)
    return True


def run_trial_ddp(ctx: SearchContext, stage_name: str) -> None:
    """The body of one torchrun job: rank 0 asks and tells, every rank trains."""
    unit = ctx.search.find_unit(stage_name)
    if unit is None:
        raise ConfigError(f"unknown stage {stage_name!r}", field="--trial-stage")
    stage = ctx.search.training_unit(unit)
    dist = init_distributed(str(ctx.recipe_data.get("train", {}).get("device", "auto")))
    try:
        trial = claim_trial(ctx, stage) if dist.is_main else None
        # Every rank learns whether rank 0 got a trial; the others train only if it did.
        if broadcast_object(trial is not None):
            if trial is not None:
                run_claimed(ctx, stage, trial)
            else:
                execute_trial(ctx, stage, None)
    finally:
        shutdown_distributed()


def run_trial_torchrun(ctx: SearchContext, stage: Stage) -> int:
    """Launches one DDP trial over ``gpus_per_trial`` processes and waits for it."""
    nproc = ctx.study.trial_gpus
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return launch(
        nproc, [*ctx.worker_args(), "--trial-stage", stage.label, "--no-progress"], env=env
    )
