"""Classification: cross-entropy (with label smoothing, mixup/cutmix) and top-k accuracy."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from tunekit.core import DistInfo, all_reduce_sum


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
