"""Workers: processes that take trials from a study's stages until the plan is done.

A worker is a loop over the stages: run a trial while the stage has budget
left (or a retry waiting), wait while other workers finish the stage's last
trials, then go on to the next stage. Workers share nothing but the storage,
so one started on another machine against the same storage URL joins in, and
re-running the command resumes a study.

``--workers N`` starts N worker processes on this machine; on a GPU machine
each gets its own ``gpus_per_trial`` GPUs (CUDA_VISIBLE_DEVICES). A trial over
several processes runs under torchrun: rank 0 owns the Optuna trial and
broadcasts its parameters to the other ranks.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from tunekit.config import Recipe
from tunekit.core import broadcast_object, init_distributed, launch, shutdown_distributed
from tunekit.errors import ConfigError, TunekitError, did_you_mean
from tunekit.outputs import check_output_dir

from ._liveness import Heartbeat, reap_stale, retry_trial
from ._objective import PruningHook, load_recipe_data, sample_params, trial_recipe
from ._signals import Stopped, die_with_parent
from ._space import Space, check_points, space_from_specs
from ._stages import Stage, StagedSearch, count_trials, summary_data
from ._storage import journal_path, masked, open_storage
from ._study import Study, load_study, resolve_recipe_path


@dataclass
class SearchPlan:
    """A study loaded and checked, with nothing written yet; :meth:`open` creates its storage.

    A command checks its arguments and the first stage's data against the plan, so
    that a mistake leaves no study directory or journal behind.
    """

    study: Study
    study_file: Path
    overrides: list[str]
    recipe_path: Path
    recipe_data: dict[str, Any]
    study_dir: Path
    storage_url: str | None
    space: Space
    from_sanity: str | None = None

    def open(self, *, create: bool = True) -> SearchContext:
        """Opens (or, with ``create``, creates) the study's storage.

        Raises:
            TunekitError: ``create`` is False and no search has run on this storage yet.
        """
        if not create:
            self._check_exists()
        backend = open_storage(self.storage_url, self.study_dir, self.study.liveness)
        search = StagedSearch(self.study, backend, base_space=self.space)
        if not create and search.existing(search.stages[0]) is None:
            raise self._missing(
                f"storage {masked(self.storage_url or '')} holds no study "
                f"{search.stages[0].study_name!r}"
            )
        plan = {f.name: getattr(self, f.name) for f in fields(SearchPlan)}
        return SearchContext(**{**plan, "overrides": list(self.overrides)}, search=search)

    def _check_exists(self) -> None:
        path = journal_path(self.storage_url, self.study_dir)
        if path is not None and not path.is_file():
            raise self._missing(f"no journal file {path}")

    def _missing(self, what: str) -> TunekitError:
        return TunekitError(
            f"study {self.study.name!r} has not been searched yet ({what}); run "
            f"`tunekit search --study {self.study_file}` first, or give its --out or --storage",
            field="--study",
        )


@dataclass
class SearchContext(SearchPlan):
    """A plan whose storage is open: everything a worker needs, and the staged search on it."""

    search: StagedSearch = field(kw_only=True)

    @property
    def storage_desc(self) -> str:
        return (
            masked(self.storage_url) if self.storage_url else str(self.study_dir / "study.journal")
        )

    def worker_args(self) -> list[str]:
        """The ``tunekit search`` arguments that reopen this same study (for child processes)."""
        args = ["search", "--study", str(self.study_file), "--out", str(self.study_dir)]
        if self.storage_url:
            args += ["--storage", self.storage_url]
        for o in self.overrides:
            args += ["--set", o]
        if self.from_sanity:
            args += ["--from-sanity", self.from_sanity]
        return args


def prepare_search(
    study: str,
    *,
    overrides: list[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    storage: str | None = None,
    from_sanity: str | None = None,
) -> SearchPlan:
    """Loads a study and checks it against its recipe; writes nothing."""
    cfg, path = load_study(study, overrides)
    recipe_path = resolve_recipe_path(cfg.recipe, path)
    recipe_data = load_recipe_data(recipe_path)
    study_dir = Path(out) if out else Path(cfg.output_dir) / cfg.name
    check_output_dir(study_dir, field="--out" if out else "output_dir")
    space = space_from_specs(cfg.space)
    if from_sanity:
        space = ranges_from_sanity(space, from_sanity)
    check_study(cfg, recipe_data, space, file=str(path), recipe_file=str(recipe_path))
    return SearchPlan(
        cfg,
        path,
        list(overrides or []),
        recipe_path,
        recipe_data,
        study_dir,
        storage,
        space,
        from_sanity,
    )


def open_search(
    study: str,
    *,
    overrides: list[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    storage: str | None = None,
    from_sanity: str | None = None,
    create: bool = True,
) -> SearchContext:
    """Loads a study, checks it, and opens (or, with ``create``, creates) its storage.

    Example:
        >>> ctx = open_search("digits", out="runs/search/digits")  # doctest: +SKIP
        >>> run_worker(ctx)  # doctest: +SKIP
    """
    plan = prepare_search(
        study, overrides=overrides, out=out, storage=storage, from_sanity=from_sanity
    )
    return plan.open(create=create)


MAX_WORKERS_PER_CORE = 4


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def check_workers(study: Study, workers: int) -> None:
    """``--workers`` must be 1 or more, and their GPUs must exist (on a GPU machine)."""
    if workers < 1:
        raise ConfigError(
            f"value {workers} is not allowed: use 1 or more workers", field="--workers"
        )
    cores = os.cpu_count() or 1
    if workers > MAX_WORKERS_PER_CORE * cores and not _has_cuda():
        # Each worker is a training process: past a few per core they only fight for it.
        raise ConfigError(
            f"value {workers} is not allowed: this machine has {cores} CPU cores and no GPU; "
            f"use at most {MAX_WORKERS_PER_CORE * cores} workers here (each trains a model), "
            "or start more workers on other machines against the same --storage",
            field="--workers",
        )
    if workers > 1 or study.gpus_per_trial > 1:
        gpu_groups(workers, study.gpus_per_trial)


def ranges_from_sanity(space: Space, file: str) -> Space:
    """Starts the lr and weight-decay ranges from ``tunekit sanity``'s suggestion (sanity.json)."""
    from dataclasses import replace

    path = Path(file)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("no such file", file=file, field="--from-sanity") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"not JSON ({exc.msg} at line {exc.lineno})", file=file, field="--from-sanity"
        ) from None
    suggested = data.get("search_space") if isinstance(data, dict) else None
    if not isinstance(suggested, dict):
        raise ConfigError("no 'search_space' mapping; run `tunekit sanity` to write one", file=file)
    out = dict(space)
    for key, param in (("lr", "optim.lr"), ("weight_decay", "optim.weight_decay")):
        pair = suggested.get(key)
        if pair is None or param not in out:
            continue
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(v, (int, float)) for v in pair)
        ):
            raise ConfigError(
                f"value {pair!r} is not allowed: give [low, high]",
                file=file,
                field=f"search_space.{key}",
            )
        lo, hi = float(pair[0]), float(pair[1])
        r = out[param]
        if not (0 < lo < hi) and r.type == "log_uniform":
            raise ConfigError(
                f"value {pair!r} is not allowed: a log range needs 0 < low < high",
                file=file,
                field=f"search_space.{key}",
            )
        out[param] = replace(r, low=lo, high=hi)
    return out


def check_study(
    study: Study, recipe_data: dict[str, Any], space: Space, *, file: str, recipe_file: str
) -> None:
    """Builds every stage's recipe at the ends of every range and at every choice (conditional
    parameters where their condition holds), so a bad value fails now, in one line."""
    points = check_points(space)
    for stage in study.stages:
        recipes = [
            trial_recipe_checked(study, recipe_data, stage, point, file, recipe_file, None)
            for point in points
        ]
        check_metrics(study, stage, recipes[0], file)


def check_metrics(study: Study, stage: Any, recipe: Recipe, file: str) -> None:
    """The study's metric and the stage's pruner's must be keys the trial's evaluation gives.

    The study's metric values each trial and must be the model's own (``val/...``); a pruner
    may compare an averaged model (``ema/val/top1``) that the stage's recipe keeps.
    """
    from tunekit.run import averaging_section, record_metrics, task_metrics

    names = task_metrics(recipe)
    if study.metric not in names:
        raise ConfigError(
            f"value {study.metric!r} is not allowed{did_you_mean(study.metric, names)}: the "
            f"{recipe.task} evaluation gives {', '.join(names)} (to compare an averaged model, "
            f"set a stage's pruner.metric)",
            file=file,
            field="metric",
        )
    metric = stage.pruner.metric
    if metric is None or metric in record_metrics(recipe):
        return
    field = f"stages.{stage.name}.pruner.metric"
    section = averaging_section(metric.split("/", 1)[0])
    if section:
        raise ConfigError(
            f"value {metric!r} is not allowed here: stage {stage.name!r} has no "
            f"averaging.{section} in its recipe; add it to the stage's set (e.g. "
            f"averaging.ema.decay=0.98 for ema) or prune on {study.metric!r}",
            file=file,
            field=field,
        )
    allowed = record_metrics(recipe)
    raise ConfigError(
        f"value {metric!r} is not allowed{did_you_mean(metric, allowed)}: stage {stage.name!r}'s "
        f"trials evaluate {', '.join(allowed)}",
        file=file,
        field=field,
    )


def trial_recipe_checked(
    study: Study,
    recipe_data: dict[str, Any],
    stage: Any,
    params: dict[str, Any],
    file: str,
    recipe_file: str,
    param: str | None,
) -> Recipe:
    try:
        return trial_recipe(study, recipe_data, stage, params, file=recipe_file)
    except ConfigError as exc:
        where = f"space.{exc.field}" if exc.field and exc.field in study.space else exc.field
        raise ConfigError(
            f"stage {stage.name!r} makes a recipe that does not validate: {exc.message}",
            file=file,
            field=where,
        ) from None


# -- one trial ---------------------------------------------------------------------------------


def execute_trial(
    ctx: SearchContext, stage: Stage, trial: optuna.Trial | None
) -> TrialState | None:
    """Trains one trial (on every rank under DDP; ``trial`` is None except on rank 0).

    Returns the state the trial was told (rank 0), or None on other ranks.
    """
    from tunekit.run import train

    ss = ctx.search
    if trial is not None:
        space = ss.space(stage)
        params = sample_params(trial, space)
        number = trial.number
    else:
        params, number = {}, -1
    params, number = broadcast_object((params, number))
    run_dir = ctx.study_dir / "trials" / stage.name / f"trial-{number:04d}"
    recipe = trial_recipe(ctx.study, ctx.recipe_data, stage.spec, params, file=str(ctx.recipe_path))
    hook = PruningHook(trial, ctx.study.metric, stage.spec.pruner.metric)
    if trial is not None:
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("stage", stage.name)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        if trial.user_attrs.get("failure_reason"):
            # A retry inherits the failed trial's attributes; the reason was that trial's.
            trial.set_user_attr("failure_reason", None)
    try:
        summary = train(
            recipe, out=run_dir, hooks=[hook], progress=False, file=str(ctx.recipe_path)
        )
    except FloatingPointError as exc:
        # diagnostics' guard: the loss went non-finite. The parameters are bad, not the worker:
        # prune (the sampler learns this region is poor) and record why.
        return _tell(ctx, stage, trial, TrialState.PRUNED, reason=f"non-finite loss: {exc}")
    except KeyboardInterrupt as exc:
        if trial is not None:
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
    except TunekitError as exc:
        _tell(ctx, stage, trial, TrialState.FAIL, reason=str(exc))
        raise
    except Exception as exc:  # a crash in one trial must not end the study: fail it, retry it
        if trial is None:
            raise
        _tell(ctx, stage, trial, TrialState.FAIL, reason=f"{type(exc).__name__}: {exc}")
        _retry(ctx, stage, trial)
        return TrialState.FAIL
    if trial is None:
        return None
    trial.set_user_attr("epochs_run", summary["epochs_run"])
    trial.set_user_attr("stop_reason", summary["stop_reason"])
    trial.set_user_attr("wall_time_s", summary["wall_time_s"])
    trial.set_user_attr("val_size", summary.get("val_size"))
    if hook.reason is not None:
        return _tell(ctx, stage, trial, TrialState.PRUNED, reason=hook.reason)
    if hook.pruned_at is not None:
        return _tell(ctx, stage, trial, TrialState.PRUNED)
    value = summary["best"]["value"]
    if value is None or not math.isfinite(value):
        return _tell(
            ctx, stage, trial, TrialState.FAIL, reason=f"no finite {ctx.study.metric} was measured"
        )
    return _tell(ctx, stage, trial, TrialState.COMPLETE, value=float(value))


def _tell(
    ctx: SearchContext,
    stage: Stage,
    trial: optuna.Trial | None,
    state: TrialState,
    *,
    value: float | None = None,
    reason: str | None = None,
) -> TrialState | None:
    if trial is None:
        return None
    study = ctx.search.optuna_study(stage)
    try:
        if reason is not None:
            trial.set_user_attr("failure_reason", reason)
        study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    except UpdateFinishedTrialError:
        # Another worker declared this trial dead (it missed its heartbeats) and retried it.
        return None
    return state


def _retry(ctx: SearchContext, stage: Stage, trial: optuna.Trial) -> None:
    study = ctx.search.optuna_study(stage)
    frozen = study._storage.get_trial(trial._trial_id)
    if frozen.state == TrialState.FAIL:
        retry_trial(study, frozen, ctx.study.liveness.max_retry)


def _ask(study: optuna.Study) -> optuna.Trial:
    with warnings.catch_warnings():
        # Optuna warns that its RDB heartbeat expects Study.optimize; tunekit beats itself
        # (see _liveness.Heartbeat), so ask/tell is covered.
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        return study.ask()


def run_trial_here(ctx: SearchContext, stage: Stage) -> TrialState | None:
    """Asks the stage's study for a trial and trains it in this process."""
    study = ctx.search.optuna_study(stage)
    trial = _ask(study)
    with Heartbeat(study, trial._trial_id, ctx.study.liveness):
        return execute_trial(ctx, stage, trial)


def run_trial_ddp(ctx: SearchContext, stage_name: str) -> None:
    """The body of one torchrun job: rank 0 asks and tells, every rank trains."""
    stage = next((s for s in ctx.search.stages if s.name == stage_name), None)
    if stage is None:
        raise ConfigError(f"unknown stage {stage_name!r}", field="--trial-stage")
    dist = init_distributed(str(ctx.recipe_data.get("train", {}).get("device", "auto")))
    try:
        if dist.is_main:
            study = ctx.search.optuna_study(stage)
            trial = _ask(study)
            with Heartbeat(study, trial._trial_id, ctx.study.liveness):
                execute_trial(ctx, stage, trial)
        else:
            execute_trial(ctx, stage, None)
    finally:
        shutdown_distributed()


def run_trial_torchrun(ctx: SearchContext, stage: Stage) -> int:
    """Launches one DDP trial over ``gpus_per_trial`` processes and waits for it."""
    nproc = ctx.study.gpus_per_trial
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return launch(
        nproc, [*ctx.worker_args(), "--trial-stage", stage.name, "--no-progress"], env=env
    )


# -- the worker loop ---------------------------------------------------------------------------


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
            reap_stale(study, spec)
            c = count_trials(study.get_trials(deepcopy=False))
            if c.waiting > 0 or (c.accounted < stage.spec.trials and ss.budget_left()):
                if ctx.study.gpus_per_trial > 1:
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


# -- many workers on one machine ---------------------------------------------------------------


def gpu_groups(workers: int, per_trial: int) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES for each worker (None everywhere on a machine without GPUs)."""
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0:
        return [None] * workers
    if workers * per_trial > n:
        raise ConfigError(
            f"value {workers} is not allowed: {workers} workers x {per_trial} GPUs per trial "
            f"needs {workers * per_trial} GPUs and this machine has {n}",
            field="--workers",
        )
    return [",".join(str(i * per_trial + g) for g in range(per_trial)) for i in range(workers)]


def spawn_workers(ctx: SearchContext, workers: int) -> list[subprocess.Popen[bytes]]:
    """Starts ``workers`` worker processes on this machine (they end when this process ends)."""
    groups = gpu_groups(workers, ctx.study.gpus_per_trial)
    threads = max(1, (os.cpu_count() or 1) // max(1, workers * ctx.study.gpus_per_trial))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, gpus in enumerate(groups):
            env = dict(os.environ)
            env.setdefault("OMP_NUM_THREADS", str(threads))
            env["TUNEKIT_WORKER"] = str(i)
            if gpus is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpus
            cmd = [
                sys.executable, "-m", "tunekit", *ctx.worker_args(), "--as-worker", "--no-progress"
            ]  # fmt: skip
            # A worker stays in this process group, so a terminal's Ctrl-C reaches it and its
            # torchrun ranks directly; if this process is killed outright, the kernel sends it
            # SIGTERM, and it stops its trial cleanly.
            procs.append(subprocess.Popen(cmd, env=env, preexec_fn=die_with_parent()))
    except BaseException:
        stop_workers(procs)
        raise
    return procs


def wait_workers(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    """Waits for every worker and returns their exit codes (negative: killed by that signal).

    On Ctrl-C (or a SIGTERM/SIGHUP turned into one, see :func:`stop_on_signals`) it asks each
    worker to stop cleanly and waits for them.
    """
    try:
        return [p.wait() for p in procs]
    except KeyboardInterrupt:
        stop_workers(procs)
        raise


def stop_workers(procs: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    """SIGTERM each live worker (a worker stops its trial cleanly on it), SIGKILL it after ``timeout``."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def worker_exits(procs: list[subprocess.Popen[bytes]]) -> list[str]:
    """The workers that did not exit 0, in words (``worker 1 (pid 4242) was killed by SIGKILL``)."""
    out = []
    for i, p in enumerate(procs):
        code = p.returncode
        if code is None or code == 0:
            continue
        who = f"worker {i} (pid {p.pid})"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            out.append(f"{who} was killed by {name}")
        elif code == 2:
            out.append(f"{who} stopped on the error above")
        elif code - 128 in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            # A worker stops its trial cleanly on these and exits as a shell would report it.
            out.append(f"{who} was stopped by {signal.Signals(code - 128).name}")
        else:
            out.append(f"{who} exited with code {code}")
    return out
