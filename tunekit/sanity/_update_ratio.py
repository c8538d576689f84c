"""Step 3c: the update/weight ratio at the chosen LR.

||w_after - w_before|| / ||w_before|| per weight tensor over a few steps; a
healthy step moves weights by about 1e-3.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ._base import (
    LossFn,
    Objective,
    ProbeResult,
    SanityError,
    Verdict,
    cycle,
    finite_or_none,
    model_device,
    require_trainable,
)
from ._state import preserved, set_hyper

CHECK_RATIO = "update/weight ratio"

#: A healthy update moves each weight tensor by about this fraction per step.
TARGET_RATIO = 1e-3
#: The median ratio over layers passes inside this band and warns outside it. The
#: lower end is the diagnostics hooks' (1e-4); the upper end is wider than theirs
#: (1e-2) because this is measured in the first steps from initialisation at the
#: peak LR with no warmup, where ratios run high: about 0.04 for the digits CNN
#: at LR 0.1, which then trains to 99.7%. The hooks track it during training.
RATIO_BAND = (1e-4, 1e-1)


@dataclass
class UpdateRatioResult(ProbeResult):
    """||Δw|| / ||w|| per layer at one LR, averaged over the last half of a few steps."""

    lr: float
    ratios: dict[str, float]
    median: float | None
    steps: int
    verdict: Verdict

    def plot_data(self) -> dict[str, Any]:
        """The ratio per weight tensor, the 1e-3 target and the band that passes."""
        return {
            "names": list(self.ratios),
            "ratios": [finite_or_none(v) for v in self.ratios.values()],
            "target": TARGET_RATIO,
            "band": list(RATIO_BAND),
        }

    def plot(self) -> Any:
        """A plotly bar chart of the ratio per weight tensor (log axis) with the 1e-3 target line."""
        from ._plots import update_ratio_figure

        title = f"Update/weight ratio at LR {self.lr:.3g}: {self.verdict.status}"
        return update_ratio_figure(self.plot_data(), title)


def update_ratio(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    loss_fn: LossFn | None = None,
    *,
    lr: float,
    steps: int = 10,
    objective: Objective | None = None,
) -> UpdateRatioResult:
    """Measures ||w_after - w_before|| / ||w_before|| per layer over a few steps at ``lr``.

    Layers and norms are combined the way the diagnostics hooks do it
    (:class:`tunekit.diagnostics.ParamLayout`: ``sqrt(Σ‖Δ‖²) / sqrt(Σ‖w‖²)``
    over a module's parameters), so the number here and the one they track
    during training are the same quantity. Layers whose weights are all zero
    are left out. The first half of the steps is left out of the average so
    that momentum has built up. Model, optimizer and RNGs are restored afterwards.
    """
    from tunekit.diagnostics import ParamLayout

    require_trainable(model, CHECK_RATIO)
    if steps < 2:
        raise SanityError(f"{CHECK_RATIO}: steps={steps} is not allowed; use 2 or more")
    objective = objective or Objective(loss_fn, what=CHECK_RATIO)
    device = model_device(model)
    layout = ParamLayout.of(model)
    sums = [0.0] * len(layout.layers)
    counted = 0
    with preserved(model, optimizer, [loader]), torch.enable_grad():
        model.train()
        set_hyper(optimizer, lr=lr)
        batches = cycle(loader, CHECK_RATIO)
        for step in range(steps):
            before = [p.detach().clone() for p in layout.params]
            out = objective(model, next(batches), device)
            objective.step(model, optimizer, out.loss)
            if step < steps // 2:
                continue
            counted += 1
            with torch.no_grad():
                d = [float((p - b).norm()) ** 2 for p, b in zip(layout.params, before)]
                w = [float(b.norm()) ** 2 for b in before]
            for i, (dn, wn) in enumerate(zip(layout.per_layer(d), layout.per_layer(w))):
                sums[i] += dn / wn if wn > 0 else math.nan
    ratios = {
        layer: total / counted for layer, total in zip(layout.layers, sums) if not math.isnan(total)
    }
    finite = [v for v in ratios.values() if math.isfinite(v)]
    median = float(np.median(finite)) if finite else None
    return UpdateRatioResult(lr, ratios, median, steps, _ratio_verdict(median, lr))


def _ratio_verdict(median: float | None, lr: float) -> Verdict:
    lo, hi = RATIO_BAND
    expected = f"about {TARGET_RATIO:g} (early steps: {lo:g} to {hi:g})"
    if median is None:
        return Verdict(
            CHECK_RATIO,
            "WARN",
            "not measured",
            expected,
            "no finite ratio (no weight tensors, or non-finite weights)",
            "check the model has conv or linear weights and a finite loss",
        )
    if lo <= median <= hi:
        return Verdict(
            CHECK_RATIO,
            "PASS",
            f"median {median:.2g} at LR {lr:.3g}",
            expected,
            "updates are a healthy fraction of the weights",
        )
    direction = "large" if median > hi else "small"
    fix = "lower the LR" if median > hi else "raise the LR"
    return Verdict(
        CHECK_RATIO,
        "WARN",
        f"median {median:.2g} at LR {lr:.3g}",
        expected,
        f"updates are {direction} against the weights",
        f"{fix} toward a ratio of about 1e-3",
    )
