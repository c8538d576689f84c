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
    """One curve: ``x`` and ``y`` of equal length; ``epochs`` and ``images`` (seen by then)
    beside each point when the records carry them (NaN where they do not)."""

    name: str
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    epochs: list[float] = field(default_factory=list)
    images: list[float] = field(default_factory=list)


def _float_or_nan(v: Any) -> float:
    return float(v) if _finite(v) else math.nan


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
            s.epochs.append(_float_or_nan(r.get("epoch")))
            s.images.append(_float_or_nan(r.get("images")))
    return s


@dataclass
class StepAxis:
    """What the optimizer steps on a curve's x axis mean, when every curve agrees.

    Epochs and images of different runs hold different numbers of steps, so curves are
    drawn against steps; epochs label the axis too only when every curve has the same
    ``steps_per_epoch`` (``epoch_ticks``: (step, epoch) pairs), and images likewise with
    the same ``images_per_step``. None where the curves disagree or do not say.
    """

    steps_per_epoch: float | None = None
    images_per_step: float | None = None
    epoch_ticks: list[tuple[float, float]] = field(default_factory=list)


def _agreed(values: list[float]) -> float | None:
    """The value when every one is the same (to a part in 1e6), else None."""
    if not values:
        return None
    first = values[0]
    return first if all(math.isclose(v, first, rel_tol=1e-6) for v in values) else None


def step_axis(curves: Sequence[Series]) -> StepAxis:
    """The :class:`StepAxis` of curves drawn against optimizer steps.

    A curve's steps per epoch come from its points at whole epochs (a run cut by
    ``train.max_steps`` ends at a fraction of one, which says nothing more).
    """
    per_epoch: list[float] = []
    per_step: list[float] = []
    for c in curves:
        spe = [
            x / e for x, e in zip(c.x, c.epochs) if _finite(e) and e >= 1 and float(e).is_integer()
        ]
        ips = [i / x for x, i in zip(c.x, c.images) if _finite(i) and x > 0]
        if spe:
            per_epoch.append(spe[0])
        if ips:
            per_step.append(ips[0])
    spe_all = _agreed(per_epoch) if len(per_epoch) == sum(1 for c in curves if c.x) else None
    ips_all = _agreed(per_step) if len(per_step) == sum(1 for c in curves if c.x) else None
    ticks: list[tuple[float, float]] = []
    if spe_all:
        last = max((x for c in curves for x in c.x), default=0.0)
        ticks = [(e * spe_all, float(e)) for e in range(0, int(last / spe_all) + 1)]
    return StepAxis(spe_all, ips_all, ticks)


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
    """Validation metrics (``val/*`` but the loss) against the optimizer step (each point
    with its epoch and images seen)."""
    keys: list[str] = []
    for r in run.epochs:
        keys += [k for k in r if k.startswith("val/") and k != "val/loss" and k not in keys]
    return [s for s in (series(run.epochs, k, x="step") for k in keys) if s.x]


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
