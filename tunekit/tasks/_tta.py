"""Test-time augmentation: score each validation image as the average over several views.

The views (``eval.tta`` of a recipe) are the image itself, plus with
``multicrop`` its 4 corner crops and its centre crop, each ``crop_fraction``
of the side and resized back to the full size (the multi-crop averaging of
AlexNet-era evaluations, at the model's own input size), and with ``hflip``
the mirror image of every one of those: ``[hflip, multicrop]`` gives 12 views.
The model's probabilities (softmax, or sigmoid for a BCE multi-label model)
are averaged over the views; the task then scores that average as it scores
a single prediction, and the results are reported beside the model's own as
``tta/val/...``, the way the averaged
models of the ``averaging`` section are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tunekit.engine import HookBase

#: The views ``eval.tta`` may name.
VIEWS = ("hflip", "multicrop")

#: The metric prefix of the augmented evaluation (``tta/val/top1``).
PREFIX = "tta"


def five_crops(x: torch.Tensor, crop_fraction: float) -> list[torch.Tensor]:
    """The 4 corner crops and the centre crop of a batch (N, C, H, W), resized back to H x W."""
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * crop_fraction)), max(1, round(w * crop_fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    boxes = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), (top, left)]
    return [
        F.interpolate(
            x[..., i : i + ch, j : j + cw], size=(h, w), mode="bilinear", align_corners=False
        )
        for i, j in boxes
    ]


def tta_views(
    x: torch.Tensor, views: Sequence[str], crop_fraction: float = 0.875
) -> list[torch.Tensor]:
    """The batches a model is run on for the views in ``views`` (the first is ``x`` itself)."""
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise ValueError(f"unknown view {unknown[0]!r}; choose from {', '.join(VIEWS)}")
    out = [x]
    if "multicrop" in views:
        out += five_crops(x, crop_fraction)
    if "hflip" in views:
        out += [v.flip(-1) for v in out]
    return out


class TTAModel(nn.Module):
    """Wraps a model so that its output is the view-averaged prediction, as logits.

    For ``probability="softmax"`` the output is ``log(mean softmax)`` (its
    softmax is the average); for ``"sigmoid"`` it is ``logit(mean sigmoid)``.
    A task's loss and metrics applied to it therefore score the averaged
    probabilities.

    Example:
        >>> tta = TTAModel(model, ["hflip"], probability="softmax")  # doctest: +SKIP
        >>> tta(images).softmax(1)  # == (model(images).softmax(1) + model(images.flip(-1)).softmax(1)) / 2
    """

    def __init__(
        self,
        model: nn.Module,
        views: Sequence[str],
        *,
        probability: str = "softmax",
        crop_fraction: float = 0.875,
    ) -> None:
        super().__init__()
        if probability not in ("softmax", "sigmoid"):
            raise ValueError(f"probability must be 'softmax' or 'sigmoid', got {probability!r}")
        self.model = model
        self.views = tuple(views)
        self.probability = probability
        self.crop_fraction = crop_fraction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total: torch.Tensor | None = None
        batches = tta_views(x, self.views, self.crop_fraction)
        for view in batches:
            logits = self.model(view).float()
            p = logits.softmax(dim=1) if self.probability == "softmax" else logits.sigmoid()
            total = p if total is None else total + p
        assert total is not None
        mean = total / len(batches)
        eps = torch.finfo(mean.dtype).tiny
        if self.probability == "softmax":
            return mean.clamp_min(eps).log()
        mean = mean.clamp(1e-7, 1 - 1e-7)
        return mean.log() - (-mean).log1p()


class TTAHook(HookBase):
    """Evaluates the model with test-time augmentation after each evaluation.

    The metrics join the metrics store as ``tta/val/...``, before the metrics
    writer and the checkpoint hook read them.
    """

    priority = (
        62  # after the evaluation and EMA's (60), before the writers (75, 80) and checkpoints (90)
    )

    def __init__(self, views: Sequence[str], *, crop_fraction: float = 0.875) -> None:
        self.views = tuple(views)
        self.crop_fraction = crop_fraction

    def after_epoch(self) -> None:
        t = self.trainer
        if not self.metrics.evaluated:
            return
        model = TTAModel(
            t.module,
            self.views,
            probability=getattr(t.task, "probability", "softmax"),
            crop_fraction=self.crop_fraction,
        )
        model.train(t.module.training)
        self.metrics.put_eval(t.evaluate(model), model=PREFIX)
