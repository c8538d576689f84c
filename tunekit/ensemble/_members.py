"""Ensemble members read back from run directories: checkpoints, EMA/SWA averages, snapshots.

A run directory holds the resolved ``recipe.yaml`` and the files its hooks
wrote; the recipe rebuilds the network (and the validation data, for
evaluation and for the preprocessing record) and the files fill in the weights.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunekit.averaging import INDEX, load_snapshot
from tunekit.config import Recipe, load_recipe
from tunekit.core import DistInfo, load_checkpoint
from tunekit.errors import CheckpointError, ConfigError, TunekitError
from tunekit.run import Components, build_components
from tunekit.tasks import get_task


@dataclass
class Member:
    """One model of an ensemble, with where it came from and how it scored."""

    name: str
    model: nn.Module
    source: str
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class RunContext:
    """A finished run, rebuilt from its directory: recipe, data, an empty model, task, loaders."""

    run_dir: Path
    recipe: Recipe
    components: Components

    @property
    def num_classes(self) -> int:
        return int(self.components.bundle.num_classes)


def open_run(run_dir: str | os.PathLike[str], device: str = "cpu") -> RunContext:
    """Rebuilds a run from ``RUN_DIR/recipe.yaml`` (no weights loaded, nothing downloaded)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TunekitError("no such run directory", file=str(run_dir), field="--run")
    recipe_file = run_dir / "recipe.yaml"
    if not recipe_file.is_file():
        raise TunekitError(
            "not a tunekit run directory (it has no recipe.yaml); pass the directory `tunekit train --out` wrote",
            file=str(run_dir),
            field="--run",
        )
    recipe = load_recipe(recipe_file)
    why = get_task(recipe.task).no_ensembles
    if why is not None:
        raise TunekitError(
            f"ensembles and exports of {recipe.task} runs are not supported ({why}); its "
            "checkpoints/best.pt holds the model's weights under 'model' "
            "(torch.load(..., weights_only=True))",
            file=str(run_dir),
            field="--run",
        )
    # The checkpoints hold every weight: starting weights and frozen stages do not matter here.
    recipe = recipe.model_copy(
        update={
            "model": recipe.model.model_copy(update={"weights": None, "freeze_to": None}),
            "train": recipe.train.model_copy(update={"device": device}),
        }
    )
    comp = build_components(recipe, DistInfo(device=torch.device(device)), file=str(recipe_file))
    return RunContext(run_dir, recipe, comp)


def _with_weights(ctx: RunContext, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    model = copy.deepcopy(ctx.components.model)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise CheckpointError(
            f"the weights do not fit the network that {ctx.run_dir / 'recipe.yaml'} builds ({detail[:200]})",
            file=source,
        ) from None
    return model.eval()


def _summary(ctx: RunContext) -> dict[str, Any]:
    path = ctx.run_dir / "summary.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    # A user-editable file: what is not the shape a run writes counts as absent.
    if not isinstance(data, dict):
        return {}
    if not isinstance(data.get("checkpoints"), dict):
        data.pop("checkpoints", None)
    return data


def checkpoint_member(ctx: RunContext, which: str = "best", name: str | None = None) -> Member:
    """The run's ``best`` or ``last`` checkpoint as a member."""
    summary = _summary(ctx)
    path_text = (summary.get("checkpoints") or {}).get(which)
    path = (
        Path(path_text)
        if isinstance(path_text, str) and path_text
        else ctx.run_dir / "checkpoints" / f"{which}.pt"
    )
    if not path.is_absolute() and not path.exists():
        path = ctx.run_dir / "checkpoints" / f"{which}.pt"
    if not path.is_file():
        raise CheckpointError(
            f"no {which} checkpoint in run {ctx.run_dir} (was the run finished?)", file=str(path)
        )
    state = load_checkpoint(path)
    return Member(
        name or f"{which} checkpoint",
        _with_weights(ctx, state["model"], str(path)),
        str(path),
        _last_eval(state.get("history", [])),
    )


def _last_eval(history: list[dict[str, float]], model: str = "") -> dict[str, float]:
    """The newest ``val/...`` metrics in ``history``, of the side ``model`` when given."""
    prefix = f"{model}/" if model else ""
    for record in reversed(history):
        found = {
            k.removeprefix(prefix): float(v)
            for k, v in record.items()
            if k.startswith(f"{prefix}val/")
        }
        if found:
            return found
    return {}


def averaged_member(ctx: RunContext, kind: str) -> Member | None:
    """The run's EMA (``kind="ema"``) or SWA (``"swa"``) model from its last checkpoint, or None."""
    path = ctx.run_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        return None
    state = load_checkpoint(path)
    hook = {"ema": "EmaHook", "swa": "SwaHook"}[kind]
    hook_state = state.get("hooks", {}).get(hook) or {}
    weights = hook_state.get("model")
    if not weights:
        return None
    if kind == "swa":
        weights = {
            k.removeprefix("module."): v for k, v in weights.items() if k.startswith("module.")
        }
    return Member(
        kind.upper(),
        _with_weights(ctx, weights, f"{path} ({hook})"),
        f"{path}#{kind}",
        _last_eval(state.get("history", []), kind),
    )


def snapshot_members(ctx: RunContext, last: int | None = None) -> list[Member]:
    """The run's snapshots (the last ``last``; default: as many as the recipe ensembles)."""
    directory = ctx.run_dir / "snapshots"
    records: list[dict[str, Any]] = []
    index = directory / INDEX
    if index.is_file():
        records = list(json.loads(index.read_text()).get("snapshots", []))
    elif directory.is_dir():
        records = [{"file": p.name, "metrics": {}} for p in sorted(directory.glob("cycle_*.pt"))]
    if not records:
        raise TunekitError(
            "this run has no snapshots; train it with averaging.snapshots and schedule.name: sgdr "
            "(or export its EMA or a checkpoint with --members ema|best|last)",
            file=str(ctx.run_dir),
            field="--run",
        )
    if last is None:
        cfg = ctx.recipe.averaging.snapshots
        last = cfg.ensemble_last if cfg is not None else len(records)
    members: list[Member] = []
    for r in records[-last:]:
        path = directory / r["file"]
        snap = load_snapshot(path)
        label = f"snapshot {int(snap.get('cycle', len(members))) + 1} (epoch {float(snap.get('epoch', 0)):g})"
        members.append(
            Member(
                label,
                _with_weights(ctx, snap["model"], str(path)),
                str(path),
                dict(r.get("metrics") or {}),
            )
        )
    return members


MEMBER_KINDS = ("snapshots", "ema", "swa", "best", "last")


def run_members(ctx: RunContext, kind: str = "snapshots", last: int | None = None) -> list[Member]:
    """The members ``tunekit ensemble export --run`` takes: snapshots, the EMA/SWA model or a checkpoint."""
    if kind == "snapshots":
        return snapshot_members(ctx, last)
    if kind in ("ema", "swa"):
        member = averaged_member(ctx, kind)
        if member is None:
            raise TunekitError(
                f"this run kept no {kind.upper()} model; train it with averaging.{kind}",
                file=str(ctx.run_dir),
                field="--members",
            )
        return [member]
    if kind in ("best", "last"):
        return [checkpoint_member(ctx, kind)]
    raise ConfigError(
        f"unknown member kind {kind!r}; choose one of: {', '.join(MEMBER_KINDS)}", field="--members"
    )


def check_compatible(contexts: list[tuple[str, RunContext]]) -> None:
    """Members must agree on the task, the classes and the input; else a one-line error."""
    first_name, first = contexts[0]
    for name, ctx in contexts[1:]:
        if ctx.recipe.task != first.recipe.task:
            raise ConfigError(
                f"members have different tasks: {first_name} is {first.recipe.task}, {name} is {ctx.recipe.task}",
                field="--study",
            )
        if ctx.num_classes != first.num_classes:
            raise ConfigError(
                f"members have different class counts: {first_name} has {first.num_classes}, "
                f"{name} has {ctx.num_classes}; an ensemble averages the same classes",
                field="--study",
            )
        a, b = first.components.bundle.in_channels, ctx.components.bundle.in_channels
        if a != b or first.recipe.data.image_size != ctx.recipe.data.image_size:
            raise ConfigError(
                f"members take different inputs: {first_name} {a}x{first.recipe.data.image_size}px, "
                f"{name} {b}x{ctx.recipe.data.image_size}px",
                field="--study",
            )
