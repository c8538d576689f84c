"""Checks before anything is written: workers, sanity ranges, and every stage's recipe."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from optuna.distributions import CategoricalDistribution

from tunekit.config import Recipe
from tunekit.errors import ConfigError, did_you_mean

from ._objective import trial_recipe
from ._space import Space, check_points
from ._spawn import gpu_groups
from ._study import StageSpec, Study

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
        if isinstance(r.dist, CategoricalDistribution):
            continue  # the study lists the values to try; a suggested range has no place there
        log = r.dist.log
        if not lo < hi or (log and lo <= 0):
            rule = "a log range needs 0 < low < high" if log else "give low < high"
            raise ConfigError(
                f"value {pair!r} is not allowed: {rule}", file=file, field=f"search_space.{key}"
            )
        out[param] = r.with_bounds(lo, hi)
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


def check_metrics(study: Study, stage: StageSpec, recipe: Recipe, file: str) -> None:
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
    stage: StageSpec,
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
