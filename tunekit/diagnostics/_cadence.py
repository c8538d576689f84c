"""How often a diagnostic measures, chosen from what a measurement costs against a step.

A measurement that is cheap on a GPU ResNet can cost several percent of a step on a
small CPU model with many parameters, so a fixed cadence is either wasteful there or
blind elsewhere. With ``"auto"`` a diagnostic times a few of its measurements and
the steps around them, then measures as often as :data:`AUTO_BUDGET` allows.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from tunekit.engine import MetricsStore

#: The share of the training time one automatic cadence gives its measurements. The
#: update ratios and the gradient check get one each, which leaves most of a 2% budget
#: for what runs every step (the loss and output checks, the records, TensorBoard): on
#: the digits CNN on a CPU that is about 1.5% of a step (benchmarks/RESULTS.md).
AUTO_BUDGET = 0.0025


def auto_interval(cost_s: float, step_s: float, candidates: tuple[int, ...]) -> int:
    """The smallest of ``candidates`` (sorted) that keeps a measurement costing ``cost_s``
    under :data:`AUTO_BUDGET` of the steps between two measurements (each ``step_s``
    long); the largest when none does.

    >>> auto_interval(0.015, 0.300, (20, 50, 100, 250, 500))  # 15 ms against 20 x 300 ms: 0.25%
    20
    >>> auto_interval(0.030, 0.300, (20, 50, 100, 250, 500))
    50
    """
    for n in candidates:
        if cost_s <= AUTO_BUDGET * n * step_s:
            return n
    return candidates[-1]


def clock(device: torch.device) -> float:
    """Now, once the device's queue has drained (CUDA work is asynchronous: a wall-clock
    time of it needs the queue empty). Only calibrations call it: it stalls the pipeline."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class Calibration:
    """The timings an automatic cadence is chosen from.

    Args:
        candidates: the intervals to choose from, sorted.
        samples: timed measurements needed before choosing.
    """

    def __init__(self, candidates: tuple[int, ...], samples: int) -> None:
        self.candidates = candidates
        self.samples = samples
        self.costs: list[float] = []  # seconds of each timed measurement
        self.steps: list[float] = []  # seconds of each step, its measurement left out

    def choice(self) -> tuple[int, float, float] | None:
        """``(interval, cost_s, step_s)`` once there are enough timings, else None.

        The cost is the least disturbed of the measurements; a step is the median one,
        so an epoch's evaluation or a slow first step is not taken for a step's cost."""
        if len(self.costs) < self.samples or not self.steps:
            return None
        cost_s, step_s = min(self.costs), statistics.median(self.steps)
        return auto_interval(cost_s, step_s, self.candidates), cost_s, step_s


def cadence_message(what: str, interval: int, cost_s: float, step_s: float) -> str:
    """The ``diagnostics_cadence`` event's message."""
    return (
        f"{what} every {interval} steps (auto): one takes {cost_s * 1e3:.3g} ms and a step "
        f"{step_s * 1e3:.3g} ms, so they cost {100 * cost_s / (interval * step_s):.2g}% "
        "of the training time"
    )


def record_cadence(
    metrics: MetricsStore, what: str, check: str, interval: int, cost_s: float, step_s: float
) -> None:
    """Records the ``diagnostics_cadence`` event of an automatic choice (``check`` names the
    diagnostic in the event's fields, ``what`` in its message)."""
    metrics.event(
        "diagnostics_cadence",
        cadence_message(what, interval, cost_s, step_s),
        level="info",
        check=check,
        interval=interval,
        measurement_ms=cost_s * 1e3,
        step_ms=step_s * 1e3,
    )
