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
    from ._lr_finder import LRCheckResult, check_learning_rate, recommend
    from ._overfit import OverfitResult, overfit_small_sample
    from ._range_test import LRRangeResult, lr_range_test
    from ._recipe import SanityOptions, SanityReport, plain_recipe, run_sanity
    from ._report import render_html, write_report
    from ._rules import DEFAULT_RULE, RULES, suggest_all, suggest_lr
    from ._state import ProbeState, preserved, restore, snapshot
    from ._update_ratio import UpdateRatioResult, update_ratio

# Imported on first use (see tunekit._lazy), so that `tunekit sanity --help` does not import torch.
_SOURCES = {
    "._base": ("Objective", "SanityError", "Verdict"),
    "._initial_loss": ("HeadCheck", "InitialLossResult", "check_initial_loss"),
    "._cross_check": ("CrossCheckResult", "ShortRun", "cross_check_lrs"),
    "._lr_finder": ("LRCheckResult", "check_learning_rate", "recommend"),
    "._range_test": ("LRRangeResult", "lr_range_test"),
    "._rules": ("DEFAULT_RULE", "RULES", "suggest_all", "suggest_lr"),
    "._update_ratio": ("UpdateRatioResult", "update_ratio"),
    "._overfit": ("OverfitResult", "overfit_small_sample"),
    "._recipe": ("SanityOptions", "SanityReport", "plain_recipe", "run_sanity"),
    "._report": ("render_html", "write_report"),
    "._state": ("ProbeState", "preserved", "restore", "snapshot"),
}
if not TYPE_CHECKING:
    __getattr__, __dir__ = attach(__name__, _SOURCES)

__all__ = [
    "DEFAULT_RULE",
    "RULES",
    "CrossCheckResult",
    "HeadCheck",
    "InitialLossResult",
    "LRCheckResult",
    "LRRangeResult",
    "Objective",
    "OverfitResult",
    "ProbeState",
    "SanityError",
    "SanityOptions",
    "SanityReport",
    "ShortRun",
    "UpdateRatioResult",
    "Verdict",
    "check_initial_loss",
    "check_learning_rate",
    "cross_check_lrs",
    "lr_range_test",
    "overfit_small_sample",
    "plain_recipe",
    "preserved",
    "recommend",
    "render_html",
    "restore",
    "run_sanity",
    "snapshot",
    "suggest_all",
    "suggest_lr",
    "update_ratio",
    "write_report",
]
