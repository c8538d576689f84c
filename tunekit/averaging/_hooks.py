"""The averaging hooks a recipe asks for (``averaging:`` section)."""

from __future__ import annotations

from pathlib import Path

from tunekit.config import Recipe
from tunekit.engine import HookBase
from tunekit.errors import ConfigError
from tunekit.tasks import get_task

from ._ema import EmaHook
from ._snapshots import SnapshotHook
from ._swa import SwaHook


def averaging_hooks(recipe: Recipe, run_dir: Path, *, file: str | None = None) -> list[HookBase]:
    """EMA, SWA and snapshot hooks for ``recipe.averaging`` (none when the section is empty)."""
    cfg = recipe.averaging
    if cfg.swa is not None and cfg.snapshots is not None:
        raise ConfigError(
            "averaging.swa and averaging.snapshots both want the learning rate: SWA holds its own LR from "
            "start_epoch on, so no snapshot would sit at the bottom of an SGDR cycle; keep one of them",
            file=file,
            field="averaging",
        )
    why = get_task(recipe.task).no_snapshots
    if cfg.snapshots is not None and why is not None:
        raise ConfigError(
            f"{why}; use averaging.ema or averaging.swa (one averaged model) instead",
            file=file,
            field="averaging.snapshots",
        )
    hooks: list[HookBase] = []
    if cfg.ema is not None:
        hooks.append(EmaHook.from_config(cfg.ema))
    if cfg.swa is not None:
        hooks.append(SwaHook.from_config(cfg.swa))
    if cfg.snapshots is not None:
        hooks.append(SnapshotHook.from_recipe(recipe, run_dir, file=file))
    return hooks
