"""Each plot's data as plain values, computed before any rendering (and tested as such)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._runs import RunRecords

RATIO = "update_ratio/"
GRAD = "grad_norm/"
ACT = "act/"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` finite values (NaN until one is seen).

    Written out because numpy's convolution has no notion of skipping the
    non-finite points that a diverging run leaves in its losses.
    """
    out: list[float] = []
    buf: list[float] = []
    total = 0.0
    for v in values:
        if _finite(v):
            buf.append(v)
            total += v
            if len(buf) > window:
                total -= buf.pop(0)
        out.append(total / len(buf) if buf else math.nan)
    return out


def default_window(n: int) -> int:
    """About 5% of the points, between 1 and 100."""
    return max(1, min(100, n // 20))


@dataclass
class Series:
    """One curve: ``x`` and ``y`` of equal length."""

    name: str
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)


def series(
    records: Sequence[dict[str, Any]], key: str, x: str = "step", name: str | None = None
) -> Series:
    """The finite values of ``key`` against ``x``, in record order."""
    s = Series(name or key)
    for r in records:
        v, at = r.get(key), r.get(x)
        if (
            isinstance(v, (int, float))
            and isinstance(at, (int, float))
            and _finite(v)
            and _finite(at)
        ):
            s.x.append(float(at))
            s.y.append(float(v))
    return s


@dataclass
class LossData:
    """Train loss per step (scatter) with its moving average, and the per-epoch means."""

    steps: list[float]
    losses: list[float]
    moving_average: list[float]
    window: int
    epoch_train: Series
    epoch_val: Series
    non_finite_steps: list[float]


def loss_data(run: RunRecords, window: int | None = None) -> LossData:
    steps, losses, bad = [], [], []
    for r in run.steps:
        v = r.get("train/step_loss")
        if v is None:
            continue
        if _finite(v):
            steps.append(float(r["step"]))
            losses.append(float(v))
        else:
            bad.append(float(r["step"]))
    bad += [
        float(e["step"])
        for e in run.events
        if e.get("event") == "non_finite" and e.get("where") == "loss"
    ]
    w = window or default_window(len(losses))
    return LossData(
        steps,
        losses,
        moving_average(losses, w),
        w,
        series(run.epochs, "train/loss", name="train (epoch mean)"),
        series(run.epochs, "val/loss", name="validation"),
        sorted(set(bad)),
    )


def metric_data(run: RunRecords) -> list[Series]:
    """Validation metrics (``val/*`` but the loss) against the epoch."""
    keys: list[str] = []
    for r in run.epochs:
        keys += [k for k in r if k.startswith("val/") and k != "val/loss" and k not in keys]
    return [s for s in (series(run.epochs, k, x="epoch") for k in keys) if s.x]


def lr_data(run: RunRecords) -> Series:
    """The learning rate per recorded step (per epoch when no step records carry it)."""
    s = series(run.steps, "lr", name="learning rate")
    return s if s.x else series(run.epochs, "lr", name="learning rate")


@dataclass
class HeatmapData:
    """``log10`` of the update/weight ratio: one row per layer, one column per measured step.

    ``z[i][j]`` is None where layer ``i`` has no finite, positive ratio at
    ``steps[j]`` (a zero ratio is kept apart in ``zero_layers``: log10 is -inf).
    """

    layers: list[str]
    steps: list[float]
    z: list[list[float | None]]
    zero_layers: list[str]
    target: float = 1e-3


def ratio_heatmap(run: RunRecords) -> HeatmapData:
    rows = [r for r in run.steps if any(k.startswith(RATIO) for k in r)]
    layers: list[str] = []
    for r in rows:
        layers += [
            k[len(RATIO) :] for k in r if k.startswith(RATIO) and k[len(RATIO) :] not in layers
        ]
    z: list[list[float | None]] = [[None] * len(rows) for _ in layers]
    zero: set[str] = set()
    for j, r in enumerate(rows):
        for i, layer in enumerate(layers):
            v = r.get(RATIO + layer)
            if isinstance(v, (int, float)) and _finite(v) and v > 0:
                z[i][j] = math.log10(v)
            elif v == 0:
                zero.add(layer)
    return HeatmapData(
        layers, [float(r["step"]) for r in rows], z, [n for n in layers if n in zero]
    )


@dataclass
class RatioBand:
    """Across layers, per measured step: the smallest, median and largest ratio (zeros left out)."""

    steps: list[float]
    low: list[float]
    median: list[float]
    high: list[float]
    bounds: tuple[float, float] = (1e-4, 1e-2)


def ratio_band(heat: HeatmapData, bounds: tuple[float, float] = (1e-4, 1e-2)) -> RatioBand:
    band = RatioBand([], [], [], [], bounds)
    for j, step in enumerate(heat.steps):
        col = sorted(10.0**v for v in (row[j] for row in heat.z) if v is not None)
        if not col:
            continue
        band.steps.append(step)
        band.low.append(col[0])
        band.median.append(statistics.median(col))
        band.high.append(col[-1])
    return band


@dataclass
class GradData:
    """The global gradient norm per step and each layer's at the measured steps."""

    total: Series
    layers: list[Series]


def grad_data(run: RunRecords) -> GradData:
    names: list[str] = []
    for r in run.steps:
        names += [k for k in r if k.startswith(GRAD) and k != GRAD + "total" and k not in names]
    return GradData(
        series(run.steps, GRAD + "total", name="total"),
        [series(run.steps, k, name=k[len(GRAD) :]) for k in names],
    )


@dataclass
class ActivationData:
    """Per statistic (mean, std, dead, saturated), one curve per layer."""

    stats: dict[str, list[Series]]


def activation_data(run: RunRecords) -> ActivationData:
    keys: list[str] = []
    for r in run.steps:
        keys += [k for k in r if k.startswith(ACT) and k not in keys]
    stats: dict[str, list[Series]] = {}
    for key in keys:
        layer, _, stat = key[len(ACT) :].rpartition("/")
        s = series(run.steps, key, name=layer)
        if s.x:
            stats.setdefault(stat, []).append(s)
    return ActivationData(stats)


@dataclass
class EventRow:
    step: int
    epoch: float
    event: str
    level: str
    message: str


def event_rows(run: RunRecords) -> list[EventRow]:
    return [
        EventRow(
            int(e.get("step", 0)),
            float(e.get("epoch", 0.0)),
            str(e.get("event", "")),
            str(e.get("level", "info")),
            str(e.get("message", "")),
        )
        for e in run.events
    ]
