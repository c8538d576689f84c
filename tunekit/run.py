"""Builds a run from a recipe (data, model, optimizer, schedule, hooks) and trains it.

This is the one place where config turns into objects; the CLI, sanity checks
and search all come through here and never reach into a trainer's internals.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tunekit.config import Recipe, ScheduleConfig, recipe_to_yaml
from tunekit.core import (
    DistInfo,
    broadcast_object,
    init_distributed,
    load_checkpoint,
    resolve_device,
    seed_everything,
)
from tunekit.data import DataBundle, build_loaders
from tunekit.engine import (
    CheckpointHook,
    EarlyStopping,
    HookBase,
    MetricsWriter,
    Phase,
    PhaseHook,
    PhaseSetup,
    ProgressHook,
    Trainer,
    build_optimizer,
    build_scheduler,
    phase_at,
    phase_starts,
)
from tunekit.errors import CheckpointError, ConfigError, TunekitError, did_you_mean, in_file
from tunekit.tasks import get_task


@dataclass
class Components:
    """What a recipe builds before any training: enough for sanity checks too."""

    recipe: Recipe
    bundle: DataBundle
    model: nn.Module
    task: Any
    train_loader: torch.utils.data.DataLoader[Any]
    val_loader: torch.utils.data.DataLoader[Any]
    dist: DistInfo


def configure_determinism(recipe: Recipe, device: torch.device) -> None:
    torch.backends.cudnn.benchmark = not recipe.train.deterministic
    if recipe.train.deterministic:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # warn_only: a few CUDA kernels (detection's roi_align backward) have no
        # deterministic version; CPU runs are exact either way.
        torch.use_deterministic_algorithms(True, warn_only=True)


def amp_dtype(recipe: Recipe, device: torch.device) -> torch.dtype | None:
    """Mixed precision on GPUs only: bf16 where supported, else fp16."""
    mode = recipe.train.amp
    if device.type != "cuda" or mode == "off":
        return None
    if mode == "fp16":
        return torch.float16
    if mode == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def use_channels_last(recipe: Recipe, device: torch.device) -> bool:
    mode = recipe.train.channels_last
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def task_metrics(recipe: Recipe) -> tuple[str, ...]:
    """The ``val/...`` keys the recipe's task evaluation gives, without building anything."""
    return get_task(recipe.task).metric_names(recipe)


#: The metric prefixes of the models each ``averaging`` section evaluates beside the model
#: (``ema/val/top1``; snapshots: the newest snapshot alone and the ensemble of the last ones).
AVERAGE_PREFIXES = {"ema": ("ema",), "swa": ("swa",), "snapshots": ("snapshot", "snapshots")}


def averaging_section(prefix: str) -> str | None:
    """The ``averaging`` section whose model a metric prefix names (``snapshot`` -> snapshots)."""
    return next((sec for sec, pre in AVERAGE_PREFIXES.items() if prefix in pre), None)


def side_models(recipe: Recipe) -> tuple[str, ...]:
    """The averaged models the recipe evaluates beside the model, by their metric prefix."""
    avg = recipe.averaging
    averaged = tuple(p for sec, pre in AVERAGE_PREFIXES.items() if getattr(avg, sec) for p in pre)
    return (*averaged, "tta") if recipe.eval.tta else averaged  # eval.tta: the augmented views


def record_metrics(recipe: Recipe) -> tuple[str, ...]:
    """Validation keys of an epoch record (metrics.jsonl): ``val/top1``, ``ema/val/top1``, ..."""
    names = task_metrics(recipe)
    return (*names, *(f"{side}/{n}" for side in side_models(recipe) for n in names))


def check_metric(recipe: Recipe, *, file: str | None = None) -> None:
    """``train.metric`` must be a key the evaluation gives: with a misspelt one a run would
    train to the end with no best checkpoint, and early stopping would never stop it."""
    allowed = record_metrics(recipe)
    metric = recipe.train.metric
    if metric not in allowed:
        side = metric.partition("/val/")[0] if "/val/" in metric else None
        section = side and averaging_section(side)
        if section:
            hint = f" (the recipe has no averaging.{section})"
        elif side == "tta":
            hint = " (the recipe has no eval.tta)"
        else:
            hint = did_you_mean(metric, allowed)
        raise ConfigError(
            f"value {metric!r} is not allowed{hint}: the "
            f"{recipe.task} evaluation of this recipe gives {', '.join(allowed)}",
            file=file,
            field="train.metric",
        )


def build_components(
    recipe: Recipe, dist: DistInfo | None = None, *, file: str | None = None
) -> Components:
    """Data, loaders, model (on its device, not yet wrapped in DDP) and task."""
    dist = dist or DistInfo()
    seed_everything(recipe.seed)
    channels_last = use_channels_last(recipe, dist.device)
    bundle, model, task = get_task(recipe.task).build(
        recipe, dist, channels_last=channels_last, file=file
    )
    model.to(dist.device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    with in_file(file):
        train_loader, val_loader = build_loaders(
            bundle, recipe.data, batch_size=recipe.train.batch_size, seed=recipe.seed, dist=dist
        )
    return Components(recipe, bundle, model, task, train_loader, val_loader, dist)


def check_inputs(recipe: Recipe, *, nproc: int = 1, file: str | None = None) -> None:
    """Builds the recipe's data, model and loaders once, on the CPU, in this process.

    Launchers call this before starting worker processes, so a missing dataset,
    weights file or builder, or a batch that does not split over ``nproc``, is
    reported once, in one line, instead of by every worker and then again by
    torchrun's own failure summary.
    """
    check_metric(recipe, file=file)
    with in_file(file):
        # Rank 0 of nproc, on the CPU: the launcher never needs the GPU itself.
        comp = build_components(recipe, DistInfo(world_size=nproc), file=file)
    check_syncbn(comp.model, nproc, resolve_device(recipe.train.device), file=file)
    steps = optimizer_steps(recipe, len(comp.train_loader), file=file)
    recipe_optimizer(comp.model, recipe, file=file)  # param_groups prefixes, layer_decay stages
    if recipe.phases:
        check_phases(comp.model, recipe, steps, file=file)


def check_syncbn(
    model: nn.Module, world_size: int, device: torch.device, *, file: str | None
) -> None:
    """SyncBN across several processes needs GPUs: torch's DDP refuses it on the CPU."""
    on_cpu = world_size > 1 and device.type != "cuda"
    if on_cpu and any(isinstance(m, nn.SyncBatchNorm) for m in model.modules()):
        raise ConfigError(
            "value 'syncbn' is not allowed here: SyncBN synchronises over GPUs only; "
            "for several CPU processes use 'gn' (batch-independent) or 'bn'",
            file=file,
            field="model.norm",
        )


def recipe_hooks(recipe: Recipe, run_dir: Path, *, progress: bool = True) -> list[HookBase]:
    """The hooks a recipe asks for, plus the ones every run has."""
    t = recipe.train
    metric = t.metric
    hooks: list[HookBase] = [
        MetricsWriter(run_dir / "metrics.jsonl"),
        CheckpointHook(run_dir / "checkpoints", metric, t.mode, t.keep_last),
    ]
    if t.early_stopping is not None:
        hooks.append(
            EarlyStopping(metric, t.mode, t.early_stopping.patience, t.early_stopping.min_delta)
        )
    hooks += get_task(recipe.task).hooks(recipe, run_dir)
    av = recipe.averaging
    if av.ema is not None or av.swa is not None or av.snapshots is not None:
        from tunekit.averaging import averaging_hooks

        hooks += averaging_hooks(recipe, run_dir)
    if recipe.eval.tta:
        from tunekit.tasks import TTAHook

        hooks.append(TTAHook(recipe.eval.tta, crop_fraction=recipe.eval.crop_fraction))
    diag = recipe.diagnostics
    if diag.enabled:
        from tunekit.diagnostics import diagnostic_hooks

        hooks += diagnostic_hooks(diag, run_dir)
    if progress:  # with diagnostics, live: their latest values under the bar
        low, high = diag.ratio_bounds
        hooks.append(ProgressHook(live=diag.enabled and diag.live, bounds=(low, high)))
    return hooks


def recipe_optimizer(
    model: nn.Module, recipe: Recipe, *, file: str | None = None
) -> torch.optim.Optimizer:
    """The recipe's optimizer for ``model`` (unwrapped), its LR scaled by the effective batch."""
    t = recipe.train
    with in_file(file):
        return build_optimizer(
            model,
            recipe.optim,
            t.batch_size * t.accumulate_steps,
            stages=get_task(recipe.task).stages(recipe, model),
        )


def optimizer_steps(recipe: Recipe, batches: int, *, file: str | None = None) -> int:
    """Optimizer steps per epoch: ``batches`` loader batches, ``train.accumulate_steps`` a step."""
    t = recipe.train
    steps = batches // t.accumulate_steps
    if steps == 0:
        raise ConfigError(
            f"value {t.accumulate_steps} is not allowed: an epoch has {batches} batches of "
            f"{t.batch_size}, too few for one optimizer step; lower accumulate_steps (or "
            "batch_size)",
            file=file,
            field="train.accumulate_steps",
        )
    return min(steps, t.max_steps_per_epoch or steps)


def schedule_length(recipe: Recipe) -> tuple[int, ScheduleConfig]:
    """Epochs and schedule after ``schedule.length_multiplier`` (the 1x, 2x, 6x of detection).

    The multiplier stretches ``train.epochs`` and the step milestones; warmup stays as long.
    ``train.max_steps`` is not stretched: it is a budget of optimizer steps, so a 6x run and
    a 1x run cut at the same ``max_steps`` train as many steps, each at the start of its own
    (full-length) schedule.
    """
    m = recipe.schedule.length_multiplier
    if m == 1.0:
        return recipe.train.epochs, recipe.schedule
    epochs = max(1, round(recipe.train.epochs * m))
    schedule = recipe.schedule.model_copy(
        update={"milestones": [x * m for x in recipe.schedule.milestones]}
    )
    return epochs, schedule


def wrap_ddp(model: nn.Module, dist: DistInfo) -> DistributedDataParallel:
    """``model`` in DDP (which reduces the gradients of the parameters that train now)."""
    return DistributedDataParallel(
        model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None
    )


def recipe_phases(recipe: Recipe) -> list[Phase]:
    """The recipe's ``phases`` for the trainer (empty without them)."""
    return [
        Phase(p.name, p.epochs, ", ".join(f"{k}={json.dumps(v)}" for k, v in p.set.items()))
        for p in recipe.phases
    ]


@contextlib.contextmanager
def _in_phase(recipe: Recipe, index: int, file: str | None) -> Iterator[None]:
    """Names the phase in a mistake that its settings make (a stage that is not one, ...)."""
    phase = recipe.phases[index]
    try:
        yield
    except TunekitError as exc:
        field = exc.field or ""
        own = any(field == k or field.startswith(k + ".") for k in phase.set)
        raise type(exc)(
            f"{exc.message} (phase {phase.name!r})",
            file=exc.file or file,
            field=f"phases.{index}.set.{field}" if own else exc.field,
        ) from None


def enter_phase(
    model: nn.Module, recipe: Recipe, index: int, steps: int, *, file: str | None = None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Puts ``model`` (unwrapped) in phase ``index``'s frozen state and builds its optimizer
    and its schedule over the phase's epochs (``steps`` optimizer steps an epoch)."""
    active = recipe.phase_recipe(index)
    with _in_phase(recipe, index, file):
        get_task(recipe.task).set_frozen_stages(model, active, file=file)
        optimizer = recipe_optimizer(model, active, file=file)
        with in_file(file):
            scheduler = build_scheduler(
                optimizer, active.schedule, steps, recipe.phases[index].epochs
            )
    return optimizer, scheduler


def check_phases(model: nn.Module, recipe: Recipe, steps: int, *, file: str | None = None) -> None:
    """Builds every phase once (stages, optimizer, schedule): a stage name or a parameter-group
    prefix that a later phase gets wrong is reported before the first step, not at that
    phase's start. ``model`` is left in the last phase's frozen state."""
    for i in range(len(recipe.phases)):
        enter_phase(model, recipe, i, steps, file=file)


def _phase_builder(
    recipe: Recipe, comp: Components, dist: DistInfo, steps: int, file: str | None
) -> Callable[[int], PhaseSetup]:
    """What the PhaseHook calls to enter phase ``i`` mid-run."""

    def enter(index: int) -> PhaseSetup:
        module = comp.model
        trainable = [p.requires_grad for p in module.parameters()]
        optimizer, scheduler = enter_phase(module, recipe, index, steps, file=file)
        # DDP reduces the parameters that trained when it was built: a new set needs a new one.
        changed = trainable != [p.requires_grad for p in module.parameters()]
        task = get_task(recipe.task).phase_task(comp.task, recipe, index)
        return PhaseSetup(
            optimizer,
            scheduler,
            grad_clip=recipe.phase_recipe(index).optim.grad_clip,
            model=wrap_ddp(module, dist) if dist.distributed and changed else None,
            task=task if task is not comp.task else None,
        )

    return enter


def build_trainer(
    recipe: Recipe,
    run_dir: Path,
    *,
    dist: DistInfo | None = None,
    hooks: Sequence[HookBase] = (),
    progress: bool = True,
    file: str | None = None,
    start_epoch: int = 0,
) -> tuple[Trainer, Components]:
    """A ready-to-train Trainer for ``recipe`` writing into ``run_dir``.

    With ``phases``, the trainer is built for the phase that ``start_epoch``
    falls in: pass the epoch of the checkpoint it is to load (its optimizer and
    schedule are that phase's). Every phase's frozen stages, optimizer and
    schedule are built once here, so a mistake in a later phase is reported now.
    """
    check_metric(recipe, file=file)
    dist = dist or DistInfo()
    configure_determinism(recipe, dist.device)
    comp = build_components(recipe, dist, file=file)
    model = comp.model
    steps = optimizer_steps(recipe, len(comp.train_loader), file=file)
    phases = recipe_phases(recipe)
    index = phase_at(phases, start_epoch) if phases else 0
    active = recipe.phase_recipe(index) if phases else recipe
    if phases:
        check_phases(model, recipe, steps, file=file)
        optimizer, scheduler = enter_phase(model, recipe, index, steps, file=file)
        comp.task = get_task(recipe.task).phase_task(comp.task, recipe, index)
    all_hooks = [*recipe_hooks(recipe, run_dir, progress=progress), *hooks]
    from tunekit.models import WeightsLog, weights_report

    loaded = weights_report(model)
    if loaded is not None:  # the run's log says how its starting weights loaded
        all_hooks.append(WeightsLog(loaded))
    # Hooks that keep a copy of the model (EMA) see it before the DDP wrap.
    for hook in all_hooks:
        hook.setup_model(model)
    if dist.distributed:
        check_syncbn(model, dist.world_size, dist.device, file=file)
        model = wrap_ddp(model, dist)
    t = recipe.train
    epochs, schedule = schedule_length(recipe)
    if phases:  # built above: the phase's optimizer, its schedule over its own epochs
        enter = _phase_builder(recipe, comp, dist, steps, file)
        all_hooks.append(PhaseHook(phases, enter, index=index))
    else:
        optimizer = recipe_optimizer(comp.model, recipe, file=file)
        with in_file(file):
            scheduler = build_scheduler(optimizer, schedule, steps, epochs)
    dtype = amp_dtype(recipe, dist.device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    trainer = Trainer(
        model,
        optimizer,
        comp.train_loader,
        comp.task,
        epochs=epochs,
        scheduler=scheduler,
        val_loader=comp.val_loader,
        hooks=all_hooks,
        dist=dist,
        seed=recipe.seed,
        grad_clip=active.optim.grad_clip,
        amp_dtype=dtype,
        scaler=scaler,
        max_steps_per_epoch=t.max_steps_per_epoch,
        eval_every=t.eval_every,
        accumulate_steps=t.accumulate_steps,
        max_steps=t.max_steps,
    )
    return trainer, comp


def new_run_dir(recipe: Recipe) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return Path(recipe.output_dir) / f"{recipe.name}-{stamp}"


def latest_run_dir(recipe: Recipe) -> Path | None:
    """The newest run of this recipe that has a checkpoint to resume from."""
    root = Path(recipe.output_dir)
    runs = sorted(
        (p for p in root.glob(f"{recipe.name}-*") if (p / "checkpoints" / "last.pt").is_file()),
        key=lambda p: p.name,
    )
    return runs[-1] if runs else None


#: ``--resume`` values that are not a file: "last" needs a checkpoint, "auto" takes one if any.
RESUME_LAST = "last"
RESUME_AUTO = "auto"


def resolve_run_dir(
    recipe: Recipe, out: str | None, resume: str | None
) -> tuple[Path, Path | None]:
    """Where the run writes, and which checkpoint it resumes from (if any).

    ``resume`` is None (a fresh run), ``"last"`` (the run directory's last
    checkpoint, which must exist), ``"auto"`` (that checkpoint if there is one,
    else a fresh run: what a preemptible job passes every time), or a
    checkpoint path. The output place is checked here, before anything is built.
    """
    field = "--out" if out else "output_dir"
    if resume is None:
        run_dir = Path(out) if out else new_run_dir(recipe)
        _check_output_place(run_dir, field)
        return run_dir, None
    if resume in (RESUME_LAST, RESUME_AUTO):
        run_dir_or_none = Path(out) if out else latest_run_dir(recipe)
        if run_dir_or_none is None:
            if resume == RESUME_AUTO:
                run_dir = new_run_dir(recipe)
                _check_output_place(run_dir, field)
                return run_dir, None
            raise CheckpointError(
                f"no run of recipe {recipe.name!r} with a checkpoint under {recipe.output_dir!r}; "
                "pass --out RUN_DIR or --resume FILE, or --resume auto to start one if there is none",
                field="--resume",
            )
        run_dir = run_dir_or_none
        _check_output_place(run_dir, field)
        ckpt = run_dir / "checkpoints" / "last.pt"
        if not ckpt.is_file():
            if resume == RESUME_AUTO:
                return run_dir, None
            raise CheckpointError(
                f"no checkpoint to resume from at {ckpt}; --resume auto starts the run "
                "when there is none",
                field="--resume",
            )
        return run_dir, ckpt
    ckpt = Path(resume)
    if not ckpt.is_file():
        raise CheckpointError("no such checkpoint file", file=str(ckpt), field="--resume")
    if out:
        run_dir = Path(out)
    else:
        parent = ckpt.resolve().parent
        run_dir = parent.parent if parent.name == "checkpoints" else parent
    _check_output_place(run_dir, field)
    return run_dir, ckpt


def _check_output_place(run_dir: Path, field: str) -> None:
    from tunekit.outputs import check_output_dir

    check_output_dir(run_dir, field=field)


def train(
    recipe: Recipe,
    *,
    out: str | os.PathLike[str] | None = None,
    resume: str | None = None,
    hooks: Sequence[HookBase] = (),
    progress: bool = True,
    file: str | None = None,
) -> dict[str, Any]:
    """Trains ``recipe`` and returns the run's summary (also written as summary.json).

    Works in one process or under torchrun (every rank calls it; rank 0 writes).
    Rank 0 holds the run directory's lock for the whole run: a second process
    pointed at the same directory is refused. A run that fails before its first
    optimizer step leaves no directory behind (or, resumed, the one it found);
    one that fails later keeps what it wrote, plus ``failed.json`` saying why.

    Example:
        >>> from tunekit.config import load_recipe
        >>> summary = train(load_recipe("recipes/digits.yaml"), out="runs/demo")  # doctest: +SKIP
        >>> summary["best"]["value"]  # doctest: +SKIP
        0.98
    """
    from tunekit.outputs import RunDirLock, is_empty_run_dir, remove_stale_temp_files

    dist = init_distributed(recipe.train.device)
    run_dir, ckpt = resolve_run_dir(recipe, str(out) if out else None, resume)
    run_dir = Path(broadcast_object(str(run_dir)))
    if ckpt is not None:
        # Validate before building anything, so a bad file costs nothing.
        state = load_checkpoint(ckpt)
    lock = RunDirLock(run_dir, field="--out" if out else "output_dir")
    created = False
    if dist.is_main:
        # Empty but for a lock: made for this run (by it, or by the launcher of its workers).
        created = is_empty_run_dir(run_dir)
        lock.acquire()
        remove_stale_temp_files(run_dir)
    trainer: Trainer | None = None
    wrote_recipe = False
    start_step = 0
    try:
        trainer, _ = build_trainer(
            recipe,
            run_dir,
            dist=dist,
            hooks=hooks,
            progress=progress,
            file=file,
            start_epoch=int(state["epoch"]) if ckpt is not None else 0,
        )
        if dist.is_main:
            (run_dir / "recipe.yaml").write_text(recipe_to_yaml(recipe))
            wrote_recipe = True
            (run_dir / FAILED_NAME).unlink(missing_ok=True)
        if ckpt is not None:
            trainer.load_state_dict(state)
        start_step = trainer.step
        started = time.perf_counter()
        trainer.train()
        summary = make_summary(trainer, recipe, run_dir, time.perf_counter() - started)
        if dist.is_main:
            tmp = run_dir / ".summary.json.tmp"
            tmp.write_text(json.dumps(summary, indent=2, allow_nan=True))
            tmp.replace(run_dir / "summary.json")
        return summary
    except BaseException as exc:
        if dist.is_main:
            trained = trainer is not None and trainer.step > start_step
            if trained:
                _record_failure(run_dir, trainer, exc)
            elif created:
                shutil.rmtree(run_dir, ignore_errors=True)
            elif wrote_recipe and ckpt is None:
                (run_dir / "recipe.yaml").unlink(missing_ok=True)
        raise
    finally:
        lock.release()


FAILED_NAME = "failed.json"


def _record_failure(run_dir: Path, trainer: Trainer | None, exc: BaseException) -> None:
    """``failed.json``: why a run that had trained stopped (a resume that finishes removes it)."""
    if isinstance(exc, KeyboardInterrupt) or trainer is None:
        return  # interrupted, not failed: the checkpoints say where it stood
    record = {
        "error": type(exc).__name__,
        "message": str(exc),
        "step": trainer.step,
        "epoch": trainer.epoch,
        "time": time.time(),
    }
    with contextlib.suppress(OSError):
        (run_dir / FAILED_NAME).write_text(json.dumps(record, indent=2, allow_nan=True))


def make_summary(trainer: Trainer, recipe: Recipe, run_dir: Path, wall: float) -> dict[str, Any]:
    from tunekit.models import weights_report

    ck = next(h for h in trainer.hooks if isinstance(h, CheckpointHook))
    loaded = weights_report(trainer.module)
    final = trainer.history[-1] if trainer.history else {}
    ckdir = run_dir / "checkpoints"
    return {
        "recipe": recipe.name,
        "task": recipe.task,
        "run_dir": str(run_dir),
        "epochs_run": trainer.epoch,
        "epochs_planned": trainer.epochs,
        "steps": trainer.step,
        # The planned length in steps (what the schedule spans), and the cut if any.
        "steps_planned": trainer.epochs * trainer.steps_per_epoch,
        "max_steps": trainer.max_steps,
        "images": trainer.step * trainer.images_per_step,
        "world_size": trainer.dist.world_size,
        "stop_reason": trainer.stop_reason,
        "wall_time_s": wall,
        "metric": recipe.train.metric,
        "mode": recipe.train.mode,
        "best": {"value": ck.best, "epoch": ck.best_epoch},
        "final": final,
        # How many items the metric was measured on: its noise depends on it.
        "val_size": len(trainer.val_loader.dataset) if trainer.val_loader is not None else None,  # type: ignore[arg-type]
        "checkpoints": {
            "last": str(ckdir / "last.pt"),
            "best": str(ckdir / "best.pt") if (ckdir / "best.pt").exists() else None,
        },
        # How model.weights loaded (counts of loaded, missing, unexpected, ... tensors).
        "weights": loaded.as_dict() if loaded is not None else None,
        "phases": phases_summary(recipe, trainer.epoch),
    }


def phases_summary(recipe: Recipe, epochs_run: int) -> list[dict[str, Any]]:
    """Each phase: its name, epochs, first epoch, the epochs of it that ran, and its settings."""
    out = []
    for p, start in zip(recipe.phases, phase_starts(recipe_phases(recipe))):
        ran = min(max(epochs_run - start, 0), p.epochs)
        out.append(
            {
                "name": p.name,
                "epochs": p.epochs,
                "start_epoch": start,
                "epochs_run": ran,
                "set": p.set,
            }
        )
    return out
