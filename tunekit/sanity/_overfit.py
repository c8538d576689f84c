"""Step 2 of the recipe: can the model memorise a handful of minibatches?

A model and loss that are wired correctly drive the training accuracy on a
few fixed batches to 100% (a detector: the loss to a small fraction of its
start) once regularisation is off. When they cannot, the direction of the
failure says what to change: a loss that does not fall points at an LR that
is too low, a bad initialisation, or a model whose output does not depend on
its input; a loss that explodes points at an LR that is too high.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from ._base import (
    LossFn,
    Objective,
    ProbeResult,
    SanityError,
    Verdict,
    finite_or_none,
    model_device,
    require_trainable,
    take_batches,
)
from ._state import dropout_off, label_smoothing_off, preserved, set_hyper

CHECK = "overfit"

Outcome = Literal["fit", "slow", "not_falling", "exploding"]

#: A pass-mean loss this many times its start counts as exploding (as in the range test).
DIVERGE_FACTOR = 4.0
#: The loss has "not fallen" when its best pass-mean is above this fraction of the start.
FLAT_FRACTION = 0.9


@dataclass
class OverfitResult(ProbeResult):
    """What :func:`overfit_small_sample` measured.

    Attributes:
        outcome: "fit", "slow" (falling but not there within the budget),
            "not_falling" or "exploding".
        steps: steps taken to fit, or the steps run when it did not.
        losses: the loss of every step (before that step's update).
        accuracies: the accuracy on every step's batch (classifier), else empty.
        start_loss: the loss before the first update.
        best_loss: lowest mean loss over one pass through the sample.
        input_independent: the logits were the same for every input in a batch.
        judged_losses: what a detector's fit is judged on, per step: the loss
            without soft-target terms (equal to ``losses`` for a classifier).
    """

    outcome: Outcome
    steps: int
    max_steps: int
    num_batches: int
    losses: list[float]
    accuracies: list[float]
    start_loss: float
    best_loss: float
    verdict: Verdict
    input_independent: bool = False
    judged_losses: list[float] = field(default_factory=list)

    @property
    def fitted(self) -> bool:
        return self.outcome == "fit"

    def plot_data(self) -> dict[str, list[float | None]]:
        """Loss and batch accuracy per step (non-finite losses as None, i.e. gaps), and the
        loss judged when it differs from the loss (empty otherwise)."""
        judged = self.judged_losses if self.judged_losses != self.losses else []
        return {
            "step": list(range(len(self.losses))),
            "loss": [finite_or_none(x) for x in self.losses],
            "accuracy": list(self.accuracies),
            "judged": [finite_or_none(x) for x in judged],
        }

    def plot(self) -> Any:
        """A plotly figure: loss per step (log scale) above, batch accuracy below (classifiers)."""
        from ._plots import overfit_figure

        title = (
            f"Overfit {self.num_batches} batches: {self.verdict.status} "
            f"({self.outcome}, {self.steps} steps)"
        )
        return overfit_figure(self.plot_data(), title)


def overfit_small_sample(
    model: nn.Module,
    loader: Iterable[Any],
    loss_fn: LossFn | None = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    num_batches: int = 5,
    max_steps: int = 300,
    loss_fraction: float = 0.2,
    objective: Objective | None = None,
) -> OverfitResult:
    """Trains on the loader's first ``num_batches`` batches until they are memorised.

    Regularisation is switched off for the probe: dropout and stochastic depth
    (eval mode), weight decay (0 in every parameter group), and label
    smoothing (when ``loss_fn`` has a ``label_smoothing`` attribute). The
    batches are drawn once and reused, so data augmentation does not change
    them. Model, optimizer and RNGs are restored afterwards.

    Args:
        model, loader, loss_fn: as in :func:`check_initial_loss` (``loss_fn=None``: detector).
        optimizer: the optimizer to probe with, at its own LR; default Adam(lr=1e-3).
        num_batches: the sample, in batches (5 to 10 is usual).
        max_steps: the step budget.
        loss_fraction: a detector has fitted when its mean loss over one pass
            through the sample falls below this fraction of its loss before the
            first update (terms with soft targets, FCOS's centerness, left out:
            their floor is above 0).

    Example:
        >>> result = tunekit.overfit_small_sample(model, loader, nn.CrossEntropyLoss(), optimizer=opt)  # doctest: +SKIP
        >>> result.outcome, result.steps  # doctest: +SKIP
        ('fit', 45)
    """
    if num_batches < 1 or max_steps < 1:
        raise SanityError(
            f"{CHECK}: num_batches ({num_batches}) and max_steps ({max_steps}) must be 1 or more"
        )
    if not 0.0 < loss_fraction < 1.0:
        raise SanityError(
            f"{CHECK}: loss_fraction={loss_fraction} is not allowed; use a value in (0, 1), e.g. 0.1"
        )
    require_trainable(model, CHECK)
    objective = objective or Objective(loss_fn, what=CHECK)
    device = model_device(model)
    own_optimizer = optimizer is None
    with preserved(model, optimizer, [loader]), label_smoothing_off(objective.loss_fn):
        batches = take_batches(loader, num_batches, CHECK)
        opt = optimizer or torch.optim.Adam(
            [p for p in model.parameters() if p.requires_grad], lr=1e-3
        )
        set_hyper(opt, weight_decay=0.0)
        model.train()
        dropout_off(model)
        result = _run(model, opt, objective, batches, device, max_steps, loss_fraction)
    if own_optimizer:
        del opt
    return result


def _run(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    objective: Objective,
    batches: list[Any],
    device: torch.device,
    max_steps: int,
    loss_fraction: float,
) -> OverfitResult:
    n = len(batches)
    losses: list[float] = []
    fit_losses: list[float] = []  # what the fit is judged on (see _fit_value)
    accuracies: list[float] = []
    window: deque[bool] = deque(maxlen=n)  # was each of the last n batches fully correct?
    start = best = math.inf
    outcome: Outcome | None = None
    input_independent = False
    for step in range(max_steps):
        out = objective(model, batches[step % n], device)
        loss = float(out.loss.detach())
        losses.append(loss)
        fit_losses.append(_fit_value(out.terms, loss))
        counts = out.correct()
        if counts is not None:
            accuracies.append(counts[0] / max(counts[1], 1))
            window.append(counts[0] == counts[1])
            if out.logits is not None and len(out.logits) > 1:
                input_independent = bool(out.logits.detach().float().std(dim=0).max() <= 1e-6)
        if not math.isfinite(loss):
            outcome = "exploding"
            break
        if step == 0:
            # The loss before any update is the reference: a pass mean already
            # includes the first updates, which is where an explosion shows.
            start = best = loss
            fit_start = fit_losses[0]
        if len(losses) >= n:
            pass_mean = sum(losses[-n:]) / n
            best = min(best, pass_mean)
            if pass_mean > DIVERGE_FACTOR * start:
                outcome = "exploding"
                break
            fitted = (
                len(window) == n and all(window)
                if counts is not None
                else sum(fit_losses[-n:]) / n < loss_fraction * fit_start
            )
            if fitted:
                outcome = "fit"
                break
        objective.step(model, opt, out.loss)
    if outcome is None:
        # A classifier that only learned the class frequencies has not started
        # learning: judge the fall against that floor too, not only the start.
        reference = min(start, _label_entropy(batches)) if counts is not None else start
        flat = best > FLAT_FRACTION * reference
        outcome = "not_falling" if flat or input_independent else "slow"
    steps = len(losses)
    verdict = _verdict(
        outcome,
        steps,
        max_steps,
        n,
        losses,
        accuracies,
        start,
        best,
        input_independent,
        counts is not None,
        loss_fraction,
        fit_losses,
    )
    return OverfitResult(
        outcome,
        steps,
        max_steps,
        n,
        losses,
        accuracies,
        start,
        best,
        verdict,
        input_independent,
        fit_losses,
    )


def _label_entropy(batches: list[Any]) -> float:
    """Entropy of the sample's class labels: the loss of a model that ignores its input."""
    labels = [b[1] for b in batches if isinstance(b, (tuple, list)) and len(b) == 2]
    if not labels or not all(isinstance(y, torch.Tensor) and y.ndim == 1 for y in labels):
        return math.inf
    counts = torch.bincount(torch.cat(labels).long().cpu()).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


#: Loss terms with soft targets (FCOS centerness: BCE against a value in (0, 1))
#: cannot fall to 0: their floor is the targets' entropy, so a fraction of the
#: start is not reachable. They are left out of the detector's fit criterion.
_SOFT_TARGET_TERMS = ("ctrness", "centerness")


def _fit_value(terms: dict[str, torch.Tensor], total: float) -> float:
    if len(terms) <= 1:
        return total
    kept = [
        float(v.detach())
        for k, v in terms.items()
        if not any(s in k.lower() for s in _SOFT_TARGET_TERMS)
    ]
    return sum(kept) if kept else total


def _verdict(
    outcome: Outcome,
    steps: int,
    max_steps: int,
    n: int,
    losses: list[float],
    accuracies: list[float],
    start: float,
    best: float,
    input_independent: bool,
    classifier: bool,
    loss_fraction: float,
    fit_losses: list[float],
) -> Verdict:
    target = "100% training accuracy" if classifier else f"loss < {loss_fraction:g} x start"
    expected = f"{target} within {max_steps} steps"
    last_acc = f", accuracy {accuracies[-1]:.0%}" if accuracies else ""
    judged = ""
    if not classifier and fit_losses != losses:
        n_last = min(n, len(fit_losses))
        judged = (
            f" (judged without soft-target terms: {fit_losses[0]:.3g} -> "
            f"{sum(fit_losses[-n_last:]) / n_last:.3g} over the last pass)"
        )
    if outcome == "fit":
        return Verdict(
            CHECK,
            "PASS",
            f"fitted {n} batches in {steps} steps",
            expected,
            f"loss {start:.3g} -> {losses[-1]:.3g}{last_acc}{judged}",
        )
    if outcome == "exploding":
        what = (
            "became Inf/NaN"
            if not math.isfinite(losses[-1])
            else f"rose from {start:.3g} to {losses[-1]:.3g}"
        )
        return Verdict(
            CHECK,
            "FAIL",
            f"exploding at step {steps}",
            expected,
            f"the loss {what}: the LR is too high",
            "lower the learning rate (by 10x), or add warmup or gradient clipping",
        )
    if outcome == "not_falling":
        if input_independent:
            reason = (
                f"the loss did not fall ({start:.3g} -> best {best:.3g}): the model's output is the same "
                "for every input, so it cannot tell the samples apart"
            )
            fix = "check the forward pass uses its input (a detached, zeroed or overwritten tensor, a dead layer)"
        else:
            reason = f"the loss did not fall ({start:.3g} -> best {best:.3g}): the LR is too low or the initialisation is bad"
            fix = "raise the learning rate (by 10x); check the initialisation, that gradients reach every layer, and the labels"
        return Verdict(
            CHECK, "FAIL", f"not falling after {steps} steps{last_acc}", expected, reason, fix
        )
    return Verdict(
        CHECK,
        "WARN",
        f"not fitted in {steps} steps{last_acc}",
        expected,
        f"the loss fell ({start:.3g} -> best {best:.3g}) but did not reach the target",
        "give it more steps (max_steps), or raise the learning rate, or use a bigger model",
    )
