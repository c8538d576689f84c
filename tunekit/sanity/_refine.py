"""Step 3c: refine the LR by short runs shaped like the training, judged on held-out data.

The range test's suggestion lands within a few times of the LR that trains
best, more often above it than below (benchmarks/lr_finder.py), and the
cross-check's constant-LR runs cannot tell nearby LRs apart by where they
lead: a run at a constant LR ends in the noise its own step size makes, which
flatters small LRs. So the refinement trains at half, all and twice the LR
it starts from, each from the same restored state on the same batches, with
the LR decayed to zero along a cosine over the run (a recipe's schedule in
``num_iter`` steps; the decay lets each run settle where its LR led it), and
keeps the LR whose model does best on held-out batches (the recipe's
validation data): the highest top-1 where the targets are classes, a tie going
to the lower loss; the lowest loss where there is no top-1 (a detector); and
without held-out batches, the lowest training loss over the last tenth of its
run. ``run_sanity`` makes each run as long as the recipe's training, up to 300
steps (``_recipe.refine_length``).

Why top-1 before the loss: the loss keeps falling with the LR after the top-1
has stopped rising (a model trained harder is more confident), so it leans to
the higher LR. In benchmarks/lr_finder.py, over 96 checks each rerun on five
seed sets, the top-1 judge kept an LR within 1.5x of the best grid LR on 52
to 55 of 96 against the loss's 45 to 53, more often on every set, and lost
as much top-1 (1.50 against 1.52 points on average).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from tunekit.core import batch_size

from ._base import (
    LossFn,
    Objective,
    ProbeResult,
    SanityError,
    Verdict,
    model_device,
    require_steps,
    require_trainable,
)
from ._cross_check import train_steps
from ._state import preserved

CHECK_REFINE = "lr refinement"
JUDGED_ON_TOP1 = "held-out top-1"

#: The LRs the refinement tries, as shares of the LR it starts from: one step of 2x each side.
#: In benchmarks/lr_finder.py the suggestion was too high on most tasks (up to 12x the best LR
#: of 2-epoch trainings) and too low on a few (down to 0.3x); a quarter was tried too and never
#: won in 38 checks, so it is not run.
REFINE_SHARES = (0.5, 1.0, 2.0)


@dataclass
class RefineRun:
    """One short run with its LR decayed to zero, and what its model scores at the end."""

    lr: float
    losses: list[float]
    train_end: float  # mean training loss over the last tenth (inf when the run diverged)
    held_out: float | None  # mean loss on the held-out batches (None without them)
    diverged: bool
    # top-1 on the held-out batches (None without them or without class-index targets)
    held_out_top1: float | None = None

    @property
    def score(self) -> float:
        """The loss the run is reported by: held-out, else training at the end (inf if diverged)."""
        if self.diverged:
            return math.inf
        return self.held_out if self.held_out is not None else self.train_end


@dataclass
class RefineResult(ProbeResult):
    """What :func:`refine_lr` measured: one run per LR, and the LR with the best score."""

    start: float
    runs: list[RefineRun]
    chosen: float | None
    judged_on: str  # "held-out top-1", "held-out loss" or "training loss"
    num_iter: int
    verdict: Verdict

    @property
    def choice(self) -> str:
        """How the chosen run won, in words."""
        return _choice(self.judged_on)

    def plot_data(self) -> dict[str, Any]:
        """Each run's LR and what it was judged on, and the chosen LR."""
        top1 = self.judged_on == JUDGED_ON_TOP1
        return {
            "lr": [r.lr for r in self.runs],
            "score": [
                None if not math.isfinite(r.score) else (r.held_out_top1 if top1 else r.score)
                for r in self.runs
            ],
            "chosen": self.chosen,
            "judged_on": self.judged_on,
        }

    def plot(self) -> Any:
        """A plotly figure: each run's score against its LR, the chosen LR marked."""
        from ._plots import refine_figure

        return refine_figure(self.plot_data(), f"LR refinement: {self.verdict.status}")


class HeldOutScore(NamedTuple):
    """A model's loss on held-out batches, and its top-1 where the targets are class indices."""

    loss: float
    top1: float | None


def held_out_scores(
    model: nn.Module, batches: Sequence[Any], objective: Objective, device: torch.device
) -> HeldOutScore:
    """The loss on ``batches`` without a gradient, averaged over the samples, and the top-1.

    A classifier is scored in eval mode (BN statistics as trained, dropout
    off); a model that only returns losses in train mode (a torchvision
    detector) is scored in train mode, where batch-norm running statistics
    move (:func:`refine_lr` restores them with the rest of the model). Every
    module's mode is put back after. The top-1 is None unless every batch has
    class-index targets (a multi-label exact match is too strict a score to
    choose an LR by; the loss judges those).
    """
    modes = {m: m.training for m in model.modules()}
    model.train(objective.is_detector)
    total, count = 0.0, 0
    right, seen, countable = 0, 0, True
    try:
        with torch.no_grad():
            for batch in batches:
                out = objective(model, batch, device)
                n = batch_size(batch) or 1  # a batch of another shape counts once
                total += float(out.loss) * n
                count += n
                single_label = isinstance(out.targets, torch.Tensor) and out.targets.ndim == 1
                found = out.correct() if countable and single_label else None
                if found is None:
                    countable = False
                else:
                    right, seen = right + found[0], seen + found[1]
    finally:
        for m, training in modes.items():
            m.training = training
    return HeldOutScore(total / max(count, 1), right / seen if countable and seen else None)


def refine_lr(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    loss_fn: LossFn | None = None,
    *,
    start: float,
    shares: Sequence[float] = REFINE_SHARES,
    num_iter: int = 100,
    held_out: Sequence[Any] | None = None,
    objective: Objective | None = None,
) -> RefineResult:
    """Short runs at ``start`` times each share, LR decayed to zero along a cosine, from the same
    state and data; the LR whose model does best on ``held_out`` wins (top-1 where the targets
    are classes, a tie to the lower loss; else the loss), or without it the lowest training loss
    at the end.

    Model, optimizer and RNGs are restored after every run. The optimizer's own
    weight decay stays (the refinement compares LRs as the training will use them).

    Example:
        >>> res = refine_lr(model, opt, loader, nn.CrossEntropyLoss(), start=0.2,
        ...                 held_out=val_batches)  # doctest: +SKIP
        >>> res.chosen, res.judged_on  # doctest: +SKIP
        (0.1, 'held-out top-1')
    """
    require_trainable(model, CHECK_REFINE)
    require_steps(num_iter, CHECK_REFINE)
    if not (start > 0 and math.isfinite(start)):
        raise SanityError(f"{CHECK_REFINE}: start={start!r} is not allowed; use a positive LR")
    if not shares or any(not (s > 0 and math.isfinite(s)) for s in shares):
        raise SanityError(
            f"{CHECK_REFINE}: shares={list(shares)!r} is not allowed; use positive numbers"
        )
    objective = objective or Objective(loss_fn, what=CHECK_REFINE)
    device = model_device(model)
    held = list(held_out) if held_out is not None else []
    window = max(5, num_iter // 10)
    runs: list[RefineRun] = []
    for lr in sorted({start * s for s in shares}):

        def cosine(i: int, peak: float = lr) -> float:
            return peak * 0.5 * (1 + math.cos(math.pi * i / num_iter))

        with preserved(model, optimizer, [loader]):
            losses = train_steps(
                model, optimizer, loader, objective, num_iter, cosine, CHECK_REFINE
            )
            diverged = len(losses) < num_iter or not all(map(math.isfinite, losses))
            end = math.inf if diverged else float(np.mean(losses[-window:]))
            diverged = diverged or end > 4 * losses[0]
            score = top1 = None
            if held and not diverged:
                score, top1 = held_out_scores(model, held, objective, device)
                diverged = not math.isfinite(score)
        runs.append(RefineRun(lr, losses, end, score, diverged, top1))
    chosen, judged_on = judge(runs, held_out=bool(held))
    return RefineResult(start, runs, chosen, judged_on, num_iter, _verdict(runs, chosen, judged_on))


def judge(runs: Sequence[RefineRun], *, held_out: bool) -> tuple[float | None, str]:
    """The LR of the best run that did not diverge (None if every run did), and what it was
    judged on: the held-out top-1 when every such run has one (a tie to the lower held-out
    loss), else the held-out loss, or without held-out data the training loss at the end."""
    alive = [r for r in runs if not r.diverged]
    if not held_out:
        judged_on = "training loss"
    elif alive and all(r.held_out_top1 is not None for r in alive):
        judged_on = JUDGED_ON_TOP1
    else:
        judged_on = "held-out loss"

    def rank(run: RefineRun) -> tuple[float, float]:
        top1 = run.held_out_top1 if judged_on == JUDGED_ON_TOP1 else None
        return (-top1 if top1 is not None else 0.0, run.score)

    best = min(alive, key=rank, default=None)
    return (best.lr if best is not None else None), judged_on


def _choice(judged_on: str) -> str:
    if judged_on == JUDGED_ON_TOP1:
        return "the highest held-out top-1, a tie to the lower loss"
    return f"the lowest {judged_on}"


def _verdict(runs: list[RefineRun], chosen: float | None, judged_on: str) -> Verdict:
    shown = "held-out top-1 (loss)" if judged_on == JUDGED_ON_TOP1 else judged_on
    tried = ", ".join(f"{r.lr:.3g}" for r in runs)
    expected = f"one of {tried} trains without diverging"
    scores = ", ".join(f"{r.lr:.3g}: {_score_text(r, judged_on)}" for r in runs)
    if chosen is None:
        return Verdict(
            CHECK_REFINE,
            "FAIL",
            "every run diverged",
            expected,
            f"{shown} per LR: {scores}",
            "lower the LR range (--end-lr) or look at the model and data",
        )
    return Verdict(
        CHECK_REFINE,
        "PASS",
        f"chosen {chosen:.3g} ({_choice(judged_on)})",
        expected,
        f"{shown} per LR after a cosine decay over the run: {scores}",
    )


def _score_text(run: RefineRun, judged_on: str) -> str:
    if run.diverged:
        return "diverged"
    if judged_on == JUDGED_ON_TOP1 and run.held_out_top1 is not None:
        return f"{run.held_out_top1:.1%} ({run.score:.4g})"
    return f"{run.score:.4g}"
