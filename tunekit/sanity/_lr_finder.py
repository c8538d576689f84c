"""Step 3 of the recipe: find a learning rate that makes the loss fall.

Four probes, each in its own file and each starting from the same restored state:

1. the LR range test (:mod:`._range_test`): an exponential LR sweep; a rule
   (:mod:`._rules`, the steepest fall of the smoothed loss by default) reads
   the suggestion off it;
2. a cross-check by short runs (:mod:`._cross_check`) at 1e-1 .. 1e-4 and every
   rule's suggestion; it settles on the suggestion (halved for Adam-family
   optimizers) unless that run falls clearly less than the best run (then on
   the best run's LR);
3. a refinement (:mod:`._refine`): runs at half, all and twice the LR the
   first two settled on, each with its LR decayed to zero, judged on held-out
   batches; the best of them is the chosen LR;
4. the update/weight ratio (:mod:`._update_ratio`) at the chosen LR (a
   healthy step moves weights by about 1e-3).

:func:`check_learning_rate` runs them in order and derives the ranges for a
coarse search.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ._base import LossFn, Objective, Verdict, prefetch
from ._cross_check import CROSS_CHECK_LRS, CrossCheckResult, cross_check_lrs
from ._range_test import CHECK_RANGE, LRRangeResult, lr_range_test
from ._refine import REFINE_SHARES, RefineResult, refine_lr
from ._rules import DEFAULT_RULE, RULES, check_rule
from ._state import preserved
from ._update_ratio import UpdateRatioResult, update_ratio


@dataclass
class LRCheckResult:
    """The range test, the cross-check, the ratio at the chosen LR, and the ranges for a search."""

    range_test: LRRangeResult
    cross_check: CrossCheckResult
    ratio: UpdateRatioResult | None
    chosen: float | None
    search_space: dict[str, list[float]] = field(default_factory=dict)
    chosen_by: str = ""  # why ``chosen``: the suggestion kept or the cross-check's pick, refined
    start: float | None = None  # the suggestion the choice starts from (halved for Adam)
    refine: RefineResult | None = None  # the refinement around the cross-check's LR, if it ran

    @property
    def verdicts(self) -> list[Verdict]:
        out = [self.range_test.verdict, self.cross_check.verdict]
        if self.refine is not None:
            out.append(self.refine.verdict)
        if self.ratio is not None:
            out.append(self.ratio.verdict)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "chosen_by": self.chosen_by,
            "start": self.start,
            "suggestion": self.range_test.suggestion,
            "rule": self.range_test.rule,
            "search_space": self.search_space,
            "range_test": self.range_test.to_dict(),
            "cross_check": self.cross_check.to_dict(),
            "refine": self.refine.to_dict() if self.refine is not None else None,
            "update_ratio": self.ratio.to_dict() if self.ratio is not None else None,
        }


def search_space(chosen: float, optimizer: torch.optim.Optimizer) -> dict[str, list[float]]:
    """Log-uniform ranges for a coarse search around the chosen LR.

    The LR range spans a decade each side of the chosen LR (a coarse search
    should be able to find that the cross-check's pick was off by 10x). Weight
    decay follows the usual ranges: coupled L2 (SGD, Adam) 1e-6..1e-3,
    decoupled (AdamW) 1e-4..1e-1.
    """
    decoupled = isinstance(optimizer, torch.optim.AdamW)
    wd = [1e-4, 1e-1] if decoupled else [1e-6, 1e-3]
    return {"lr": [chosen / 10, chosen * 10], "weight_decay": wd}


#: With an Adam-family optimizer (AdamW, Adam, NAdam, RAdam, Adamax: a ``betas`` hyperparameter)
#: the check starts from this share of the rule's suggestion. In benchmarks/lr_finder.py the
#: steepest-slope point was 2.2x to 4.7x the best LR of 2-epoch trainings with AdamW, on two
#: tasks and two machines; half of it was 1.1x on the task it was chosen on and 2.4x on the
#: task added to check it (benchmarks/RESULTS.md): closer on every AdamW measurement, not always
#: within 1.5x. Adam's steps are about the LR in size whatever the gradient, so the sweep's
#: fastest fall comes from steps larger than a whole training sustains.
ADAPTIVE_SHARE = 0.5


def starting_lr(
    suggestion: float | None, rule: str, optimizer: torch.optim.Optimizer
) -> tuple[float | None, str]:
    """The LR the cross-check weighs, and what it is: ``rule``'s suggestion, halved for an
    Adam-family optimizer (see :data:`ADAPTIVE_SHARE`)."""
    if suggestion is None or not any("betas" in g for g in optimizer.param_groups):
        return suggestion, f"the {rule} suggestion"
    name = type(optimizer).__name__
    return suggestion * ADAPTIVE_SHARE, f"half the {rule} suggestion ({name})"


#: The range test's suggestion stays the LR the refinement starts from unless its short run fell
#: by less than this share of the best short run's fall (or diverged). The cross-check's own
#: pick, the largest fall after ~100 steps on the same batches, was closer to the best LR of
#: 2-epoch trainings than the suggestion in some runs of benchmarks/lr_finder.py and further in
#: others (benchmarks/RESULTS.md), and the refinement was measured from the suggestion, so the
#: pick only overrules a suggestion that visibly trains worse.
KEEP_SUGGESTION = 0.9


def recommend(
    suggestion: float | None, rule: str, cc: CrossCheckResult, what: str | None = None
) -> tuple[float | None, str]:
    """The chosen LR and why: the suggestion when its short run holds up, else the cross-check's.

    ``what`` names the suggestion in the reason ("the steepest suggestion" unless given)."""
    what = what or f"the {rule} suggestion"
    best = max((r.fall for r in cc.runs if not r.diverged), default=-math.inf)
    own = next(
        (r for r in cc.runs if suggestion is not None and math.isclose(r.lr, suggestion)), None
    )
    if own is not None and not own.diverged and own.fall > 0 and own.fall >= KEEP_SUGGESTION * best:
        return own.lr, (f"{what} (its short run: loss -{own.fall:.0%}; the best: -{best:.0%})")
    if cc.chosen is None:
        return None, "no LR made the loss fall in the cross-check"
    if own is None:
        why = "no suggestion"
    elif own.diverged:
        why = f"{what} {own.lr:.3g} diverged in its short run"
    else:
        why = f"{what} {own.lr:.3g} fell by only {own.fall:.0%} in its short run"
    return cc.chosen, f"the cross-check's largest fall ({why})"


def check_learning_rate(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    loss_fn: LossFn | None = None,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    cross_check_iter: int = 100,
    candidates: Sequence[float] = CROSS_CHECK_LRS,
    rule: str = DEFAULT_RULE,
    cross_check_rules: Sequence[str] | None = None,
    weight_decay: float = 1e-4,
    refine_iter: int = 100,
    refine_shares: Sequence[float] = REFINE_SHARES,
    held_out: Iterable[Any] | None = None,
    held_out_batches: int = 16,
    ratio_steps: int = 10,
    cache_mb: float = 512.0,
    objective: Objective | None = None,
) -> LRCheckResult:
    """Range test, cross-check by short runs (with every rule's suggestion added), refinement,
    and the ratio at the chosen LR.

    The LR the choice starts from is ``rule``'s suggestion (half of it for an
    Adam-family optimizer, :func:`starting_lr`). When its cross-check run
    diverged or fell by less than :data:`KEEP_SUGGESTION` of the best run's
    fall, the cross-check's pick takes its place (see :func:`recommend`). The
    refinement (:func:`refine_lr`, ``refine_iter`` steps per run, 0 to skip it)
    then tries ``refine_shares`` of that LR and chooses the one whose model does
    best on the first ``held_out_batches`` batches of ``held_out`` (validation
    data: the highest top-1, a tie to the lower loss, or the lowest loss without
    a top-1; without it, the lowest training loss at the end of the run).

    The batches are loaded once and held in memory when they fit in
    ``cache_mb`` (every run then reads the same batches, which also makes the
    comparison fairer); otherwise each run reads the loader again from the
    same generator state, which gives the same batches at the cost of loading
    them again.
    """
    with preserved(model, None, [loader]):
        cached = prefetch(
            loader,
            max(num_iter, cross_check_iter, refine_iter, ratio_steps),
            CHECK_RANGE,
            int(cache_mb * 2**20),
        )
    if cached is not None:
        loader = cached
    held: list[Any] | None = None
    if held_out is not None and refine_iter > 0:
        with preserved(model, None, [held_out]):
            held = list(itertools.islice(iter(held_out), held_out_batches)) or None
    rt = lr_range_test(
        model,
        optimizer,
        loader,
        loss_fn,
        start_lr=start_lr,
        end_lr=end_lr,
        num_iter=num_iter,
        rule=rule,
        objective=objective,
    )
    start, what = starting_lr(rt.suggestion, rt.rule, optimizer)
    lrs = list(candidates)
    names = [rule, *(RULES if cross_check_rules is None else cross_check_rules)]
    for found in [start, *(rt.suggestions.get(check_rule(name)) for name in names)]:
        if found is not None and all(abs(math.log10(found / x)) > 1e-3 for x in lrs):
            lrs.append(found)
    cc = cross_check_lrs(
        model,
        optimizer,
        loader,
        loss_fn,
        lrs=lrs,
        num_iter=cross_check_iter,
        weight_decay=weight_decay,
        objective=objective,
    )
    chosen, chosen_by = recommend(start, rt.rule, cc, what)
    refined = None
    if refine_iter > 0 and chosen is not None:
        refined = refine_lr(
            model,
            optimizer,
            loader,
            loss_fn,
            start=chosen,
            shares=refine_shares,
            num_iter=refine_iter,
            held_out=held,
            objective=objective,
        )
        if refined.chosen is not None:
            share = refined.chosen / chosen
            chosen = refined.chosen
            chosen_by = (
                f"{chosen_by}, refined to {share:.3g}x of it "
                f"({refined.choice} after {refine_iter} steps decayed to zero)"
            )
    ratio = None
    space: dict[str, list[float]] = {}
    if chosen is not None:
        ratio = update_ratio(
            model, optimizer, loader, loss_fn, lr=chosen, steps=ratio_steps, objective=objective
        )
        space = search_space(chosen, optimizer)
    return LRCheckResult(rt, cc, ratio, chosen, space, chosen_by, start, refined)
