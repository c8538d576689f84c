"""Step 3a: the LR range test.

The LR grows exponentially each step (default 1e-7 to 10 over 100 steps)
while the smoothed loss is recorded; the sweep stops once the loss passes 4x
its best. The suggestion is read off the smoothed loss against log LR by the chosen rule (``_rules.py``: the steepest slope by default, fastai's
valley, minimum/10), with non-finite points dropped first, or "no suggestion"
with the reason; every rule's suggestion is kept for the report.

torch-lr-finder and Lightning's tuner run the same test, but each is tied to
its own loop (a criterion on ``model(inputs)`` or a LightningModule); this one
runs on the shared :class:`Objective`, so classifiers, detectors and recipes'
tasks go through the same code, and it restores RNGs too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

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
from ._rules import DEFAULT_RULE, check_rule, suggest_all, suggest_lr
from ._state import preserved, set_hyper

CHECK_RANGE = "lr range test"


@dataclass
class LRRangeResult(ProbeResult):
    """What :func:`lr_range_test` measured.

    Attributes:
        lrs, losses: the LR and raw loss of every step run.
        smoothed: the bias-corrected exponential moving average of the loss
            (None where the raw loss was not finite).
        suggestion: the LR ``rule`` reads off the smoothed loss, or None.
        reason: why there is (or is no) suggestion.
        min_loss_lr: the LR at the lowest smoothed loss.
        stop_reason: why the sweep ended.
        rule: the rule behind ``suggestion`` (a key of ``tunekit.sanity.RULES``).
        suggestions: every rule's suggestion on the same curve (None where it has none).
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float | None]
    suggestion: float | None
    reason: str
    min_loss_lr: float | None
    stop_reason: str
    start_lr: float
    end_lr: float
    num_iter: int
    verdict: Verdict
    rule: str = DEFAULT_RULE
    suggestions: dict[str, float | None] = field(default_factory=dict)

    def plot_data(self) -> dict[str, Any]:
        """LR, raw and smoothed loss per step, and the suggestion (None when there is none)."""
        return {
            "lr": list(self.lrs),
            "loss": [finite_or_none(x) for x in self.losses],
            "smoothed": list(self.smoothed),
            "suggestion": self.suggestion,
        }

    def plot(self) -> Any:
        """A plotly figure: loss against LR (log axis), smoothed, with the suggestion marked."""
        from ._plots import range_test_figure

        return range_test_figure(self.plot_data(), f"LR range test: {self.verdict.status}")


def smooth(losses: Sequence[float], beta: float) -> list[float | None]:
    """Bias-corrected exponential moving average; non-finite points are skipped (None)."""
    out: list[float | None] = []
    avg, n = 0.0, 0
    for x in losses:
        if not math.isfinite(x):
            out.append(None)
            continue
        n += 1
        avg = beta * avg + (1 - beta) * x
        out.append(avg / (1 - beta**n))
    return out


def lr_range_test(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    loss_fn: LossFn | None = None,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    beta: float = 0.95,
    diverge_factor: float = 4.0,
    skip_start: int = 10,
    rule: str = DEFAULT_RULE,
    objective: Objective | None = None,
) -> LRRangeResult:
    """Runs an exponential LR sweep and suggests an LR; model, optimizer and RNGs are restored.

    Every parameter group gets the same LR at each step. The sweep stops when
    the smoothed loss passes ``diverge_factor`` times its best, or the loss is
    not finite.

    Args:
        model, loader, loss_fn: as in :func:`check_initial_loss` (``loss_fn=None``: detector).
        optimizer: the optimizer to sweep (its other settings, weight decay included, stay).
        start_lr, end_lr, num_iter: the sweep.
        beta: smoothing of the loss (an exponential moving average, bias-corrected).
            0.95, as torch-lr-finder: its lag is about 20 steps, a fifth of a
            100-step sweep; 0.98 (fastai, Lightning) lags about 50 steps, which
            shifts the steepest point of the smoothed curve toward larger LRs.
        skip_start: points at the start left out of the suggestion (the average is still settling).
        rule: how the suggestion is read off the curve: ``steepest`` (torch-lr-finder's,
            the default: the closest to the best LR of short trainings in
            benchmarks/lr_finder.py), ``valley`` (fastai's) or ``min10``.

    Example:
        >>> result = tunekit.lr_range_test(model, opt, loader, nn.CrossEntropyLoss())  # doctest: +SKIP
        >>> result.suggestion, result.reason  # doctest: +SKIP
        (0.012, 'steepest fall of the smoothed loss against log LR')
    """
    check_rule(rule)
    if not 0 < start_lr < end_lr:
        raise SanityError(
            f"{CHECK_RANGE}: start_lr={start_lr} and end_lr={end_lr} need 0 < start_lr < end_lr"
        )
    if num_iter < 2:
        raise SanityError(
            f"{CHECK_RANGE}: num_iter={num_iter} is not allowed; use 2 or more (100 is usual)"
        )
    if not 0 <= beta < 1:
        raise SanityError(f"{CHECK_RANGE}: beta={beta} is not allowed; use a value in [0, 1)")
    require_trainable(model, CHECK_RANGE)
    objective = objective or Objective(loss_fn, what=CHECK_RANGE)
    device = model_device(model)
    ratio = end_lr / start_lr
    lrs: list[float] = []
    losses: list[float] = []
    stop_reason = f"reached end_lr {end_lr:g}"
    with preserved(model, optimizer, [loader]):
        model.train()
        batches = cycle(loader, CHECK_RANGE)
        best = math.inf
        avg = 0.0
        for i in range(num_iter):
            lr = start_lr * ratio ** (i / (num_iter - 1))
            set_hyper(optimizer, lr=lr)
            out = objective(model, next(batches), device)
            loss = float(out.loss.detach())
            lrs.append(lr)
            losses.append(loss)
            if not math.isfinite(loss):
                stop_reason = f"loss not finite at LR {lr:.3g}"
                break
            # Every loss so far was finite (the loop stops at the first that is not).
            avg = beta * avg + (1 - beta) * loss
            smoothed = avg / (1 - beta ** (i + 1))
            best = min(best, smoothed)
            if smoothed > diverge_factor * best:
                stop_reason = f"loss passed {diverge_factor:g}x its best at LR {lr:.3g}"
                break
            objective.step(model, optimizer, out.loss)
    sm = smooth(losses, beta)
    suggestion, reason = suggest_lr(lrs, sm, rule=rule, skip_start=skip_start)
    suggestions = suggest_all(lrs, sm, skip_start=skip_start)
    finite = [(s, lr) for s, lr in zip(sm, lrs) if s is not None]
    min_loss_lr = min(finite)[1] if finite else None
    if suggestion is not None:
        verdict = Verdict(
            CHECK_RANGE,
            "PASS",
            f"suggestion {suggestion:.3g} ({rule})",
            f"a fall in [{start_lr:g}, {end_lr:g}]",
            f"{reason}; {stop_reason}",
        )
    elif not math.isfinite(losses[0]):
        verdict = Verdict(
            CHECK_RANGE,
            "FAIL",
            "loss not finite at the first step",
            f"a fall in [{start_lr:g}, {end_lr:g}]",
            "the loss is Inf/NaN before any update",
            "check the inputs and the loss for NaN/Inf, and the initialisation",
        )
    else:
        verdict = Verdict(
            CHECK_RANGE,
            "WARN",
            "no suggestion",
            f"a fall in [{start_lr:g}, {end_lr:g}]",
            f"{reason}; {stop_reason}",
            "widen the sweep (start_lr/end_lr), run more iterations, or check that the model can learn (overfit check)",
        )
    return LRRangeResult(
        lrs,
        losses,
        sm,
        suggestion,
        reason,
        min_loss_lr,
        stop_reason,
        start_lr,
        end_lr,
        num_iter,
        verdict,
        rule,
        suggestions,
    )
