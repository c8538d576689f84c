"""The rules that turn a range test's smoothed loss curve into one suggested LR.

Each rule users know from a peer is here under one name, so the sanity
report can show all of them next to the one it recommends:

* ``steepest``: where the smoothed loss falls fastest against log LR, before
  its minimum (torch-lr-finder's ``suggest_lr``, Lightning's ``suggestion()``);
* ``valley``: fastai's ``valley``: the longest run of falling points (a
  longest decreasing subsequence of the loss), and the point halfway along
  it (the index ``start + int(n/3) + int(n/6)`` of fastai's code);
* ``min10``: the LR at the lowest smoothed loss, divided by 10 (fastai's
  ``minimum``; Smith's "an order of magnitude below the minimum").

Every rule sees the same points: non-finite ones dropped, the first
``skip_start`` and the last ``skip_end`` left out, and a curve that never
falls gets "no suggestion" with the reason from every rule alike.
``benchmarks/lr_finder.py`` measures each rule against the best LR of a
grid of short trainings; docs/sanity.md has the table behind the default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ._base import SanityError

#: A rule: (log10 LR, smoothed loss) of the usable points -> (LR, what it is).
Rule = Callable[[np.ndarray, np.ndarray], tuple[float, str]]


def steepest(x: np.ndarray, y: np.ndarray) -> tuple[float, str]:
    """The LR where the smoothed loss falls fastest against log LR, before its minimum."""
    lowest = int(np.argmin(y))
    slope = np.gradient(y[: lowest + 1], x[: lowest + 1])
    return float(
        10 ** x[int(np.argmin(slope))]
    ), "steepest fall of the smoothed loss against log LR"


def valley(x: np.ndarray, y: np.ndarray) -> tuple[float, str]:
    """fastai's ``valley``: halfway along the longest falling stretch of the smoothed loss.

    The stretch is a longest strictly decreasing subsequence of the loss,
    which steps over small bumps that would cut a run of consecutive falls
    short; fastai's index arithmetic is kept as it is.
    """
    n = len(y)
    run = np.ones(n, dtype=int)  # run[i]: the longest decreasing subsequence ending at i
    start, end = 0, 0
    for i in range(1, n):
        lower = y[:i] > y[i]
        if lower.any():
            run[i] = int(run[:i][lower].max()) + 1
        if run[end] < run[i]:
            end = i
            start = end - int(run[end])
    third = (end - start) / 3
    i = max(0, start + int(third) + int(third / 2))
    return (
        float(10 ** x[i]),
        f"halfway along the longest fall of the smoothed loss (points {max(start, 0)}..{end})",
    )


def min10(x: np.ndarray, y: np.ndarray) -> tuple[float, str]:
    """The LR at the lowest smoothed loss, divided by 10."""
    return float(10 ** x[int(np.argmin(y))] / 10), "a tenth of the LR at the lowest smoothed loss"


#: Rule name -> rule. The order is the order of the report's table.
RULES: dict[str, Rule] = {"steepest": steepest, "valley": valley, "min10": min10}

#: The rule whose suggestion the range test reports and the chosen LR starts from: in
#: benchmarks/lr_finder.py the closest of the three on most tasks (on two machines: 0.75x to
#: 2.4x the best LR of 2-epoch trainings with SGD, 2.2x to 4.7x with AdamW, which the LR check
#: halves); valley landed 6x to 30x too low (benchmarks/RESULTS.md).
DEFAULT_RULE = "steepest"


def check_rule(rule: str) -> str:
    """``rule``, or a one-line error listing the rules there are."""
    if rule not in RULES:
        raise SanityError(
            f"lr range test: rule={rule!r} is not a suggestion rule; use one of {', '.join(RULES)}"
        )
    return rule


def suggest_lr(
    lrs: Sequence[float],
    smoothed: Sequence[float | None],
    *,
    rule: str = DEFAULT_RULE,
    skip_start: int = 10,
    skip_end: int = 1,
) -> tuple[float | None, str]:
    """The LR that ``rule`` reads off a range test's smoothed loss (see :data:`RULES`).

    Non-finite points are dropped first. Returns ``(None, reason)`` when there
    is nothing to suggest (too few points, a loss that never falls), never
    raises for a curve; an unknown ``rule`` is a :class:`SanityError`.

    Example:
        >>> suggest_lr(result.lrs, result.smoothed, rule="steepest")  # doctest: +SKIP
        (0.21, 'steepest fall of the smoothed loss against log LR')
    """
    pick = RULES[check_rule(rule)]
    points = [
        (lr, s) for lr, s in zip(lrs, smoothed) if s is not None and math.isfinite(s) and lr > 0
    ]
    dropped = len(lrs) - len(points)
    points = points[skip_start : len(points) - skip_end if skip_end else None]
    note = f" ({dropped} non-finite points dropped)" if dropped else ""
    if len(points) < 5:
        return (
            None,
            f"too few finite points to take a slope ({len(points)} after skipping the first {skip_start}){note}",
        )
    x = np.log10([p[0] for p in points])
    y = np.array([p[1] for p in points])
    lowest = int(np.argmin(y))
    if lowest < 2:
        return (
            None,
            f"the loss did not fall anywhere in the sweep (lowest at LR {points[lowest][0]:.2g}){note}",
        )
    fall = (y[0] - y[lowest]) / max(abs(y[0]), 1e-12)
    if fall < 0.02:
        return None, f"the loss fell by only {fall:.1%} over the sweep{note}"
    lr, what = pick(x, y)
    return lr, f"{what}{note}"


def suggest_all(
    lrs: Sequence[float],
    smoothed: Sequence[float | None],
    *,
    skip_start: int = 10,
    skip_end: int = 1,
) -> dict[str, float | None]:
    """Every rule's suggestion on the same curve (None where a rule has none)."""
    return {
        name: suggest_lr(lrs, smoothed, rule=name, skip_start=skip_start, skip_end=skip_end)[0]
        for name in RULES
    }
