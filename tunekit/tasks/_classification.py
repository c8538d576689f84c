"""Classification: cross-entropy (with label smoothing, mixup/cutmix) and top-k accuracy."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from tunekit.config import Recipe, RegularizationConfig
from tunekit.core import DistInfo, all_reduce_sum
from tunekit.data import DataBundle, build_data
from tunekit.engine import Task
from tunekit.models import build_model, freeze_to, frozen_modules, stage_modules, unfreeze_module

from ._base import TaskSpec


class ClassificationTask:
    """Loss and metrics for a model that maps images to class logits.

    Args:
        num_classes: size of the output layer.
        label_smoothing: as in ``F.cross_entropy``.
        mixup_alpha, cutmix_alpha: torchvision's batch MixUp/CutMix (one is
            drawn per batch when both are on); 0 turns each off.
        channels_last: convert images to channels-last memory format.
    """

    #: The keys :meth:`evaluate` returns (top5 is top-min(5, classes)).
    metric_names: ClassVar[tuple[str, ...]] = ("val/loss", "val/top1", "val/top5")

    def __init__(
        self,
        num_classes: int,
        *,
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        channels_last: bool = False,
    ) -> None:
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.channels_last = channels_last
        mixers: list[nn.Module] = []
        if mixup_alpha > 0:
            mixers.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            mixers.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        self.mix: nn.Module | None = (
            mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers) if mixers else None
        )

    def to_device(self, batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        x = x.to(device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(device, non_blocking=True)

    def losses(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        x, y = batch
        if self.mix is not None and model.training:
            x, y = self.mix(x, y)
        logits = model(x)
        return {"loss": F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Iterable[Any], dist: DistInfo) -> dict[str, float]:
        """Mean loss, top-1 and top-5 over the (sharded) validation set."""
        device = dist.device
        totals = torch.zeros(4, device=device, dtype=torch.float64)  # loss, top1, top5, count
        k = min(5, self.num_classes)
        for batch in loader:
            x, y = self.to_device(batch, device)
            logits = model(x).float()
            totals[0] += F.cross_entropy(logits, y, reduction="sum")
            top = logits.topk(k, dim=1).indices
            hit = top == y[:, None]
            totals[1] += hit[:, 0].sum()
            totals[2] += hit.any(dim=1).sum()
            totals[3] += y.numel()
        all_reduce_sum(totals)
        n = max(float(totals[3]), 1.0)
        return {
            "val/loss": float(totals[0]) / n,
            "val/top1": float(totals[1]) / n,
            "val/top5": float(totals[2]) / n,
        }


def classification_task(
    num_classes: int, reg: RegularizationConfig, *, channels_last: bool
) -> ClassificationTask:
    """The classification task with a recipe's (or a phase's) loss-side regularisation."""
    return ClassificationTask(
        num_classes,
        label_smoothing=reg.label_smoothing,
        mixup_alpha=reg.mixup_alpha,
        cutmix_alpha=reg.cutmix_alpha,
        channels_last=channels_last,
    )


class ClassificationSpec(TaskSpec):
    """``task: classification``: a classifier from ``tunekit.models`` on class-index data."""

    name = "classification"

    def metric_names(self, recipe: Recipe) -> tuple[str, ...]:
        return ClassificationTask.metric_names

    def build(
        self, recipe: Recipe, dist: DistInfo, *, channels_last: bool, file: str | None
    ) -> tuple[DataBundle, nn.Module, Task]:
        bundle = build_data(recipe.data, file=file)
        model = build_model(recipe.model, bundle.num_classes, bundle.in_channels, file=file)
        return bundle, model, self.task(recipe, bundle, channels_last=channels_last, file=file)

    def task(
        self, recipe: Recipe, bundle: DataBundle, *, channels_last: bool, file: str | None
    ) -> Task:
        """The trainer's task for ``bundle`` (the data it may check or wrap first)."""
        reg = recipe.regularization
        return classification_task(bundle.num_classes, reg, channels_last=channels_last)

    def phase_task(self, task: Task, recipe: Recipe, index: int) -> Task:
        # Only a phase that changes the loss-side regularisation needs a new task.
        if not isinstance(task, ClassificationTask) or not any(
            k.startswith("regularization.") for p in recipe.phases for k in p.set
        ):
            return task
        reg = recipe.phase_recipe(index).regularization
        return classification_task(task.num_classes, reg, channels_last=task.channels_last)

    def stages(self, recipe: Recipe, model: nn.Module | None) -> dict[str, tuple[str, ...]]:
        return stage_modules(recipe.model, model)

    def set_frozen_stages(self, model: nn.Module, recipe: Recipe, *, file: str | None) -> None:
        for name in frozen_modules(model):
            unfreeze_module(model.get_submodule(name), mode=model.training)
        freeze_to(model, recipe.model, file)

    def probe_loss(self, recipe: Recipe, task: Task) -> nn.Module | None:
        return nn.CrossEntropyLoss(label_smoothing=recipe.regularization.label_smoothing)
