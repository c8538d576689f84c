"""Step 3b: the LR cross-check by short runs.

Short runs (about 100 steps) at 1e-1, 1e-2, 1e-3, 1e-4 and the range test's
suggestions, each from the same restored state and data, with a small weight
decay on; the LR whose loss falls most is the cross-check's pick
(``check_learning_rate`` keeps the suggestion unless its run falls clearly less).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ._base import (
    LossFn,
    Objective,
    ProbeResult,
    Status,
    Verdict,
    cycle,
    finite_or_none,
    model_device,
    require_steps,
    require_trainable,
)
from ._state import preserved, set_hyper

CHECK_CROSS = "lr cross-check"

#: The fixed LRs the cross-check always tries (the rules' suggestions are added to them).
CROSS_CHECK_LRS = (1e-1, 1e-2, 1e-3, 1e-4)


@dataclass
class ShortRun:
    """One short run at a fixed LR."""

    lr: float
    losses: list[float]
    start: float  # loss before the first update
    end: float  # mean loss over the last window
    fall: float  # (start - end) / start; -inf when the run diverged
    diverged: bool


@dataclass
class CrossCheckResult(ProbeResult):
    """What :func:`cross_check_lrs` measured: one short run per LR, and the chosen LR."""

    runs: list[ShortRun]
    chosen: float | None
    num_iter: int
    weight_decay: float
    verdict: Verdict

    def plot_data(self) -> dict[str, Any]:
        """Each short run's LR, loss curve and fall, and the chosen LR."""
        return {
            "lr": [r.lr for r in self.runs],
            "curves": [[finite_or_none(x) for x in r.losses] for r in self.runs],
            "fall": [finite_or_none(r.fall) for r in self.runs],
            "chosen": self.chosen,
        }

    def plot(self) -> Any:
        """A plotly figure: the loss curve of every short run, the chosen LR highlighted."""
        from ._plots import cross_check_figure

        return cross_check_figure(self.plot_data(), f"LR cross-check: {self.verdict.status}")


def cross_check_lrs(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    loss_fn: LossFn | None = None,
    *,
    lrs: Sequence[float] = CROSS_CHECK_LRS,
    num_iter: int = 100,
    weight_decay: float = 1e-4,
    objective: Objective | None = None,
) -> CrossCheckResult:
    """Short runs at each LR from the same state and data; the LR whose loss falls most wins.

    The fall is measured from the loss before the first update (the same for
    every LR) to the mean loss over the last tenth of the run (at least 5
    steps). A run whose loss is not finite, or ends above 4x its start, is
    marked diverged and cannot win.
    """
    require_trainable(model, CHECK_CROSS)
    require_steps(num_iter, CHECK_CROSS)
    objective = objective or Objective(loss_fn, what=CHECK_CROSS)
    window = max(5, num_iter // 10)
    runs: list[ShortRun] = []
    for lr in sorted(set(lrs), reverse=True):

        def constant(_: int, value: float = lr) -> float:
            return value

        with preserved(model, optimizer, [loader]):
            set_hyper(optimizer, weight_decay=weight_decay)
            losses = train_steps(
                model, optimizer, loader, objective, num_iter, constant, CHECK_CROSS
            )
        runs.append(_short_run(lr, losses, window, num_iter))
    healthy = [r for r in runs if not r.diverged]
    best = max(healthy, key=lambda r: r.fall, default=None)
    chosen = best.lr if best is not None and best.fall > 0 else None
    return CrossCheckResult(
        runs, chosen, num_iter, weight_decay, _cross_verdict(runs, best, chosen)
    )


def train_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    objective: Objective,
    num_iter: int,
    lr_at: Callable[[int], float],
    what: str,
) -> list[float]:
    """Trains ``num_iter`` steps in train mode from the model's state as it is, step ``i`` at LR
    ``lr_at(i)``; the losses, up to and including the first that is not finite (no update is
    made from that one). The caller restores the state."""
    device = model_device(model)
    model.train()
    batches = cycle(loader, what)
    losses: list[float] = []
    for i in range(num_iter):
        set_hyper(optimizer, lr=lr_at(i))
        out = objective(model, next(batches), device)
        loss = float(out.loss.detach())
        losses.append(loss)
        if not math.isfinite(loss):
            break
        objective.step(model, optimizer, out.loss)
    return losses


def _short_run(lr: float, losses: list[float], window: int, num_iter: int) -> ShortRun:
    # The loss before the first update is the same in every run (same state,
    # same first batch), so falls are comparable; a mean over the first steps
    # would reward a run whose loss spiked there.
    start = losses[0] if math.isfinite(losses[0]) else math.inf
    diverged = len(losses) < num_iter or not all(map(math.isfinite, losses))
    end = float(np.mean(losses[-window:])) if not diverged else math.inf
    diverged = diverged or not math.isfinite(start) or end > 4 * start
    fall = (start - end) / start if not diverged and start > 0 else -math.inf
    return ShortRun(lr, losses, start, end, fall, diverged)


def _cross_verdict(runs: list[ShortRun], best: ShortRun | None, chosen: float | None) -> Verdict:
    tried = ", ".join(f"{r.lr:.2g}" for r in runs)
    expected = f"the loss falls at one of {tried}"
    if chosen is None or best is None:
        diverged = [f"{r.lr:.2g}" for r in runs if r.diverged]
        what = f"diverged at {', '.join(diverged)}; " if diverged else ""
        return Verdict(
            CHECK_CROSS,
            "FAIL",
            "no LR made the loss fall",
            expected,
            f"{what}the loss did not fall at any other LR",
            "run the overfit check first; check the data, the labels and the initialisation",
        )
    falls = ", ".join(f"{r.lr:.2g}: {'diverged' if r.diverged else f'{r.fall:+.0%}'}" for r in runs)
    status: Status = "PASS" if best.fall >= 0.1 else "WARN"
    return Verdict(
        CHECK_CROSS,
        status,
        f"chosen {chosen:.3g} (loss -{best.fall:.0%})",
        expected,
        f"fall per LR: {falls}",
        ""
        if status == "PASS"
        else "the best LR barely moves the loss: run longer, or look at the model and data",
    )
