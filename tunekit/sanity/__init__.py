"""Steps 1 to 3 of the tuning recipe as probes with verdicts: initial loss, overfit, LR.

Each probe works on your own model, loader and loss (no recipe needed),
returns a result with the numbers, a :class:`Verdict` and a ``plot()``
method, and leaves model, optimizer and RNGs exactly as it found them::

    import tunekit
    res = tunekit.check_initial_loss(model, loader, nn.CrossEntropyLoss(), num_classes=10)
    fit = tunekit.overfit_small_sample(model, loader, nn.CrossEntropyLoss(), optimizer=opt)
    lr = tunekit.lr_range_test(model, opt, loader, nn.CrossEntropyLoss())
    print(res.verdict.status, fit.steps, lr.suggestion)

``run_sanity`` runs all three on a recipe (what ``tunekit sanity`` does).
"""

from typing import TYPE_CHECKING

from tunekit._lazy import attach

if TYPE_CHECKING:
    from ._base import Objective, SanityError, Verdict
    from ._cross_check import CrossCheckResult, ShortRun, cross_check_lrs
    from ._initial_loss import HeadCheck, InitialLossResult, check_initial_loss
    from ._lr_finder import LRCheckResult, check_learning_rate, recommend, starting_lr
    from ._overfit import OverfitResult, overfit_small_sample
    from ._range_test import LRRangeResult, lr_range_test
    from ._recipe import (
        ProbeParts,
        SanityOptions,
        SanityReport,
        plain_recipe,
        probe_parts,
        run_sanity,
    )
    from ._refine import HeldOutScore, RefineResult, RefineRun, held_out_scores, refine_lr
    from ._report import render_html, write_report
    from ._rules import DEFAULT_RULE, RULES, suggest_all, suggest_lr
    from ._state import ProbeState, preserved, restore, snapshot
    from ._update_ratio import UpdateRatioResult, update_ratio
else:
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
