"""A trial: the study's recipe with sampled values, trained by ``tunekit.run.train``.

Pruning plugs in as one hook that reports each evaluated epoch's metric to the
Optuna trial and asks the trainer to stop when the pruner says so. Under DDP
only rank 0 holds the trial; the trainer agrees the stop across ranks at the
epoch's end, so all ranks stop together.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import optuna

from tunekit.config import (
    OPTIMIZER_SETTINGS,
    OptimConfig,
    Recipe,
    apply_overrides,
    read_yaml,
    set_path,
    validate,
)
from tunekit.engine import HookBase
from tunekit.errors import ConfigError

from ._space import recipe_values
from ._study import StageSpec, Study


class PruningHook(HookBase):
    """Reports ``metric`` after each evaluated epoch and stops a trial the pruner rejects.

    The value is reported at the trial's global optimizer step (``trainer.step``), not
    its epoch: trials of different schedule lengths or epoch sizes meet the pruner at
    equal iterations, and the pruner's resources (``min_resource``, ``n_warmup_steps``)
    count optimizer steps.

    Also stops a trial whose training loss went non-finite (and says so in
    ``reason``), so a diverged trial costs no more epochs.

    Args:
        trial: the Optuna trial (None on ranks other than 0).
        metric: the study's metric, the key of the epoch record that must stay finite.
        prune_metric: the key reported to the pruner (``metric`` unless given): ``val/top1``,
            ``ema/val/top1``, as in metrics.jsonl.
    """

    priority = 85  # after the metrics writer, before the checkpoint

    def __init__(
        self, trial: optuna.Trial | None, metric: str, prune_metric: str | None = None
    ) -> None:
        self.trial = trial
        self.metric = metric
        self.prune_metric = prune_metric or metric
        self.pruned_at: int | None = None  # the optimizer step
        self.reason: str | None = None
        #: what was reported, by optimizer step
        self.reported: dict[int, float] = {}

    def after_epoch(self) -> None:
        t = self.trainer
        record = self.metrics.epoch  # this epoch's record, as metrics.jsonl has it
        loss = record.get("train/loss")
        if loss is not None and not math.isfinite(loss):
            # Every rank sees the same all-reduced loss, so every rank stops here.
            self.reason = f"non-finite training loss ({loss}) at epoch {t.epoch}"
            t.request_stop(self.reason)
            return
        if self.metric not in record:
            return  # not evaluated this epoch
        value = float(record[self.metric])
        if not math.isfinite(value):
            self.reason = f"non-finite {self.metric} ({value}) at epoch {t.epoch}"
            t.request_stop(self.reason)
            return
        if self.trial is None:
            return
        if self.prune_metric not in record:
            raise ConfigError(
                f"the pruner compares {self.prune_metric!r}, which this trial's evaluation does "
                f"not produce (it has {', '.join(k for k in sorted(record) if 'val' in k)})",
                field="pruner.metric",
            )
        seen = float(record[self.prune_metric])
        self.trial.report(seen, t.step)
        self.reported[t.step] = seen
        if self.trial.should_prune():
            self.pruned_at = t.step
            t.request_stop(
                f"pruned at step {t.step}, epoch {record['epoch']:g} ({self.prune_metric} {seen:.4g})"
            )


def trial_recipe(
    study: Study,
    recipe_data: dict[str, Any],
    stage: StageSpec,
    params: dict[str, Any],
    *,
    file: str,
) -> Recipe:
    """The recipe one trial trains: study and stage overrides, fixed values, sampled values.

    ``params`` are the trial's Optuna parameters or their :func:`recipe_values` (an
    or_zero switch that is on sets its parameter to 0). A section swap's choice
    (sampled or fixed) applies that choice's overrides, after the study's and the
    stage's and before the space's other values, which are more specific.
    A fixed parameter with a condition (``when``) is set only where ``params`` meet
    it. A trial whose ``optim.name`` (sampled or fixed) differs from the recipe's
    leaves out the recipe's optimizer settings (an SGD recipe's momentum in an
    RMSprop or Adam trial): they were chosen for another optimizer, and the
    trial's own come from the study or the optimizer's defaults.
    """
    params = recipe_values(params)
    data = apply_overrides(copy.deepcopy(recipe_data), [*study.set, *stage.set, *study.overrides])
    fixed = {n: s.value for n, s in study.space.items() if s.role == "fixed"}
    values = {**fixed, **params}
    if "optim.name" in values:
        drop_optimizer_settings(data, values["optim.name"])
    swaps = {n: s.swaps for n, s in study.space.items() if s.swaps is not None}
    for name, overrides in swaps.items():
        if name in values and _condition_met(study.space[name].when, values):
            for path, value in overrides[values[name]].items():
                set_path(data, path, copy.deepcopy(value))
    for name, spec in study.space.items():
        if spec.role == "fixed" and name not in swaps and _condition_met(spec.when, values):
            set_path(data, name, spec.value)
    for name, value in params.items():
        if name not in swaps:
            set_path(data, name, value)
    if stage.steps is None or "epochs" in stage.model_fields_set:
        set_path(data, "train.epochs", stage.epochs)
    if stage.steps is not None:
        set_path(data, "train.max_steps", stage.steps)
    set_path(data, "train.metric", study.metric)
    set_path(data, "train.mode", study.mode)
    return validate(Recipe, data, file=file)


def _condition_met(when: dict[str, list[Any]] | None, values: dict[str, Any]) -> bool:
    return all(values.get(k) in allowed for k, allowed in (when or {}).items())


def drop_optimizer_settings(data: dict[str, Any], name: Any) -> None:
    """Removes a recipe's optimizer settings (momentum, betas, ...) when ``name`` is another optimizer."""
    optim = data.get("optim")
    if not isinstance(optim, dict) or optim.get("name", OptimConfig().name) == name:
        return
    for settings in OPTIMIZER_SETTINGS.values():
        for key in settings:
            optim.pop(key, None)


def load_recipe_data(path: Path) -> dict[str, Any]:
    return read_yaml(path, example="recipes/digits.yaml")
