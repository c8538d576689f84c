"""What a torchvision detector's heads should give at initialisation: log(C+1) for a softmax
box classifier (C classes + background), log 2 for objectness or centerness, and for a focal
head (RetinaNet, FCOS) a mean foreground probability at the prior its bias was set to."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from tunekit.tasks import HeadPrior


class DetectorHeads:
    """Records the mean sigmoid output of the focal classification head's last conv, and
    names the expectation of each loss term by torchvision's names.

    torchvision names that conv ``head.classification_head.cls_logits`` in RetinaNet
    and FCOS (a two-stage detector's RPN also has a ``cls_logits``, but that is
    objectness, checked through its loss against log 2).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.prob_sum = 0.0
        self.count = 0
        self.bias_prior: float | None = None
        self.names: list[str] = []
        self.handles = []
        biases = []
        for name, m in model.named_modules():
            if (
                "classification_head" in name
                and name.endswith("cls_logits")
                and isinstance(m, nn.Conv2d)
                and m.bias is not None
            ):
                biases.append(m.bias.detach().float())
                self.names.append(name)
                self.handles.append(m.register_forward_hook(self._hook))
        if biases:
            self.bias_prior = float(torch.sigmoid(torch.cat(biases)).mean())

    def _hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        p = torch.sigmoid(output.detach().float())
        self.prob_sum += float(p.sum())
        self.count += p.numel()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def priors(
        self, terms: dict[str, float], num_classes: int | None, focal_prior: float
    ) -> list[HeadPrior]:
        out: list[HeadPrior] = []
        for name, value in terms.items():
            low = name.lower()
            if "objectness" in low or "ctrness" in low or "centerness" in low:
                out.append(
                    HeadPrior(name, "sigmoid", value, math.log(2), "binary cross-entropy at p=0.5")
                )
            elif low in ("loss_classifier", "classifier") or (
                "classifier" in low and "box" not in low
            ):
                k = _box_classes(self.model, num_classes)
                if k is None:
                    out.append(
                        HeadPrior(name, "unchecked", value, None, "pass num_classes to check it")
                    )
                else:
                    note = f"log({k}): {k - 1} classes + background"
                    out.append(HeadPrior(name, "softmax", value, math.log(k), note))
            else:
                out.append(
                    HeadPrior(name, "unchecked", value, None, "no expectation at initialisation")
                )
        # Without a focal classification loss the watched conv is something else.
        focal = any(k.lower() == "classification" or "focal" in k.lower() for k in terms)
        if focal and self.bias_prior is not None and self.count:
            mean_prob = self.prob_sum / self.count
            out.append(
                HeadPrior(
                    "foreground probability",
                    "focal_prior",
                    mean_prob,
                    focal_prior,
                    layer=self.names[0],
                    bias_prob=self.bias_prior,
                )
            )
        return out


def _box_classes(model: nn.Module, num_classes: int | None) -> int | None:
    """Softmax width of a two-stage detector's box classifier (classes + background)."""
    for name, m in model.named_modules():
        if name.endswith("cls_score") and isinstance(m, nn.Linear):
            return m.out_features
    return num_classes + 1 if num_classes is not None else None
