"""Reading the learning curves: what they show, with the recipe's advice and the numbers used.

Each check is a small function of plain lists (a :class:`Curves`), so a test
can synthesise a curve with a known pathology and expect its verdict. The
thresholds are deliberately loose: a verdict should be unmistakable on the
plot, and a healthy run should get none.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tunekit.errors import TunekitError

from ._data import default_window, moving_average
from ._runs import RunRecords, load_run


@dataclass(frozen=True)
class Verdict:
    """One thing the curves show: ``code`` for programs, ``title``/``evidence``/``advice`` for people."""

    code: str
    title: str
    evidence: str
    advice: str
    numbers: dict[str, float] = field(default_factory=dict)


@dataclass
class Curves:
    """What the checks read: per-step train loss and LR, per-epoch means and validation values.

    ``val_loss``/``val_metric`` hold None where an epoch had no evaluation.
    """

    steps: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)  # aligned with steps, or empty
    epochs: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    val_metric: list[float | None] = field(default_factory=list)
    metric: str = "val/top1"
    mode: str = "max"


def curves_from_run(run: RunRecords) -> Curves:
    """The :class:`Curves` of a run's records."""
    c = Curves(metric=run.metric, mode=run.mode)
    for r in run.steps:
        if "train/step_loss" in r:
            c.steps.append(float(r["step"]))
            c.loss.append(float(r["train/step_loss"]))
            c.lr.append(float(r.get("lr", math.nan)))
    if c.lr and not all(math.isfinite(v) for v in c.lr):
        c.lr = []
    for r in run.epochs:
        if "train/loss" not in r:
            continue
        c.epochs.append(float(r.get("epoch", len(c.epochs) + 1)))
        c.train_loss.append(float(r["train/loss"]))
        c.val_loss.append(_num(r.get("val/loss")))
        c.val_metric.append(_num(r.get(run.metric)))
    if not c.loss:  # no step records (diagnostics off): read the epoch means instead
        c.steps = [float(r["step"]) for r in run.epochs if "train/loss" in r]
        c.loss = list(c.train_loss)
        c.lr = [float(r.get("lr", math.nan)) for r in run.epochs if "train/loss" in r]
    return c


def diagnose(run_dir: str | os.PathLike[str]) -> list[Verdict]:
    """Reads ``RUN_DIR/metrics.jsonl`` and returns what its curves show (empty when nothing is wrong).

    Raises:
        TunekitError: no run directory there, or no step or epoch record to read in it.

    Example:
        >>> for v in diagnose("runs/digits-..."):  # doctest: +SKIP
        ...     print(v.title, v.evidence, v.advice)
    """
    run = load_run(run_dir)
    if not run.steps and not run.epochs:
        why = (
            f"{run.skipped_lines} bad records skipped"
            if run.skipped_lines
            else "the run has not finished a step yet"
        )
        raise TunekitError(
            f"no step or epoch records to read ({why})", file=str(run.run_dir / "metrics.jsonl")
        )
    return diagnose_curves(curves_from_run(run))


def diagnose_curves(c: Curves) -> list[Verdict]:
    """Runs every check on ``c``; a diverging loss makes the train-loss shape checks moot."""
    diverging = check_diverging(c)
    if diverging is not None:
        return [diverging, *_run([check_overfitting], c)]
    return _run(CHECKS, c)


def _run(checks: Sequence[Callable[[Curves], Verdict | None]], c: Curves) -> list[Verdict]:
    return [v for v in (check(c) for check in checks) if v is not None]


# -- helpers ---------------------------------------------------------------


def _num(v: object) -> float | None:
    return (
        float(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        else None
    )


def _smooth(c: Curves) -> tuple[list[float], list[float], int]:
    """Finite (step, loss) pairs and their moving average."""
    pairs = [(s, v) for s, v in zip(c.steps, c.loss) if math.isfinite(v)]
    steps = [s for s, _ in pairs]
    w = max(3, default_window(len(pairs)))
    return steps, moving_average([v for _, v in pairs], w), w


def _start(ma_raw: list[float], w: int) -> float:
    # The first full window's mean: the loss the run started from.
    return ma_raw[min(w, len(ma_raw)) - 1]


def _initial_loss(c: Curves) -> float | None:
    finite = [v for v in c.loss[:5] if math.isfinite(v)]
    if finite:
        return sorted(finite)[len(finite) // 2]
    return c.train_loss[0] if c.train_loss else None


# -- checks ----------------------------------------------------------------


def check_diverging(c: Curves) -> Verdict | None:
    """Loss went non-finite, or climbed well back above its lowest point."""
    bad = [s for s, v in zip(c.steps, c.loss) if not math.isfinite(v)]
    if bad:
        return Verdict(
            "diverging",
            "Diverging loss",
            f"the train loss became non-finite at step {bad[0]:.0f}",
            "The learning rate is likely too high: lower it (by 3-10x) or add warmup / gradient clipping.",
            {"step": bad[0]},
        )
    steps, ma, w = _smooth(c)
    if len(ma) < 20:
        return None
    start, end = _start(ma, w), ma[-1]
    i_low = min(range(len(ma)), key=ma.__getitem__)
    low = ma[i_low]
    if (
        end > 1.5 * low
        and end - low > 0.1 * max(start - low, 0)
        and end - low > 0.1 * abs(start)
        and i_low < len(ma) - 1
    ):
        times = (
            f"{end / low:.1f}x its lowest; " if low > 0 else ""
        )  # a loss may reach 0, or go below
        return Verdict(
            "diverging",
            "Diverging loss",
            f"the train loss (moving average over {w} steps) fell to {low:.4g} at step {steps[i_low]:.0f} "
            f"and then rose to {end:.4g} by step {steps[-1]:.0f} ({times}it started at {start:.4g})",
            "The learning rate is likely too high: lower it (by 3-10x), add warmup, or clip gradients.",
            {"low": low, "low_step": steps[i_low], "end": end, "start": start},
        )
    return None


def check_flat_then_drop(c: Curves) -> Verdict | None:
    """A long flat start, then a sudden drop: a sign of a bad initialisation."""
    steps, ma, w = _smooth(c)
    if len(ma) < 40:
        return None
    start, end = _start(ma, w), ma[-1]
    drop = start - end
    if drop <= 0.3 * abs(start):
        return None
    t10 = next((i for i, v in enumerate(ma) if v < start - 0.1 * drop), None)
    t50 = next((i for i, v in enumerate(ma) if v < start - 0.5 * drop), None)
    if t10 is None or t50 is None:
        return None
    n = len(ma)
    if t10 >= 0.15 * n and (t50 - t10) <= 0.5 * t10:
        return Verdict(
            "flat_then_drop",
            "Flat, then a sudden drop",
            f"the train loss stayed near its start ({start:.4g}) for the first {steps[t10]:.0f} steps "
            f"({100 * t10 / n:.0f}% of the run), then fell halfway to {end:.4g} within {steps[t50] - steps[t10]:.0f} steps",
            "Likely a bad initialisation: the net spent those steps getting nowhere. Check that the initial "
            "loss is about log(C), initialise the last layer's bias to the class prior, use a standard init "
            "(Kaiming) and normalisation.",
            {"start": start, "flat_steps": steps[t10], "half_step": steps[t50], "end": end},
        )
    return None


def check_plateau(c: Curves) -> Verdict | None:
    """The loss stopped improving for a long stretch at a constant learning rate."""
    steps, ma, w = _smooth(c)
    if len(ma) < 40 or len(c.lr) != len(c.loss):
        return None
    start, end = _start(ma, w), ma[-1]
    drop = start - end
    if drop <= 0:
        return None
    # Where the curve came within 5% (of its total drop) of its final level.
    i_flat = next(i for i, v in enumerate(ma) if v <= end + 0.05 * drop)
    n = len(ma)
    if n - i_flat < 0.3 * n:
        return None
    lrs = [lr for s, lr in zip(c.steps, c.lr) if s >= steps[i_flat] and math.isfinite(lr)]
    if not lrs or min(lrs) <= 0 or max(lrs) / min(lrs) > 1.2:
        return None  # the schedule was already decaying the rate over the flat part
    change = (ma[i_flat] - end) / abs(ma[i_flat]) if ma[i_flat] else 0.0
    return Verdict(
        "plateau",
        "Plateau",
        f"the train loss has stayed within {abs(change) * 100:.1f}% of {end:.4g} for the last "
        f"{steps[-1] - steps[i_flat]:.0f} steps ({100 * (n - i_flat) / n:.0f}% of the run) at a constant "
        f"learning rate of {lrs[-1]:.3g}",
        "Try learning-rate decay (a step down by 10x here, or a cosine schedule): the rate is too high to "
        "settle into a better minimum.",
        {"flat_from_step": steps[i_flat], "level": end, "lr": lrs[-1]},
    )


def check_decay_too_early(c: Curves) -> Verdict | None:
    """A step decay of the learning rate while the loss was still falling fast."""
    if len(c.lr) != len(c.loss) or len(c.loss) < 40:
        return None
    pairs = [
        (s, v, lr)
        for s, v, lr in zip(c.steps, c.loss, c.lr)
        if math.isfinite(v) and math.isfinite(lr)
    ]
    steps = [p[0] for p in pairs]
    lrs = [p[2] for p in pairs]
    n = len(pairs)
    w = max(3, default_window(n))
    ma = moving_average([p[1] for p in pairs], w)
    peak = max(lrs)
    span = max(w, n // 10)
    for d in range(1, n):
        if not (lrs[d] < 0.5 * lrs[d - 1] and lrs[d - 1] >= 0.05 * peak) or d - 1 - span < 0:
            continue
        before, at = ma[d - 1 - span], ma[d - 1]
        fall = (before - at) / abs(before) if before else 0.0
        if fall > 0.1:
            return Verdict(
                "decay_too_early",
                "Learning rate decayed too early",
                f"the learning rate dropped from {lrs[d - 1]:.3g} to {lrs[d]:.3g} at step {steps[d]:.0f} while "
                f"the train loss was still falling: down {100 * fall:.0f}% (from {before:.4g} to {at:.4g}) "
                f"over the {steps[d - 1] - steps[d - 1 - span]:.0f} steps before",
                "Decay later (move the milestone back) or use a cosine schedule: the loss was still improving "
                "at the higher rate.",
                {"step": steps[d], "lr_before": lrs[d - 1], "lr_after": lrs[d], "fall": fall},
            )
    return None


def check_still_improving(c: Curves) -> Verdict | None:
    """The validation metric was still improving at the last evaluations."""
    vals = [(e, v) for e, v in zip(c.epochs, c.val_metric) if v is not None]
    if len(vals) < 4:
        return None
    sign = 1.0 if c.mode == "max" else -1.0
    q = max(2, len(vals) // 4)
    (e0, v0), (e1, v1) = vals[-1 - q], vals[-1]
    tail = [v for _, v in vals[-3:]]
    steady = all(sign * (b - a) >= 0 for a, b in itertools.pairwise(tail))
    gain = sign * (v1 - v0)
    best = max(sign * v for _, v in vals)
    if steady and sign * v1 >= best and gain > 0.01 * max(abs(v0), 1e-12):
        verb = "rose" if sign > 0 else "fell"
        return Verdict(
            "still_improving",
            f"{c.metric} still improving",
            f"{c.metric} {verb} from {v0:.4g} to {v1:.4g} over the last {q} evaluations "
            f"(epochs {e0:.0f}-{e1:.0f}) and the last one is the best",
            "Train longer: the model has not converged yet.",
            {"from": v0, "to": v1, "from_epoch": e0, "to_epoch": e1},
        )
    return None


def check_overfitting(c: Curves) -> Verdict | None:
    """Validation loss well above the training loss, or rising while the training loss falls."""
    rows = [
        (e, t, v)
        for e, t, v in zip(c.epochs, c.train_loss, c.val_loss)
        if v is not None and math.isfinite(t)
    ]
    l0 = _initial_loss(c)
    if len(rows) < 3 or l0 is None:
        return None
    e_end, t_end, v_end = rows[-1]
    i_min = min(range(len(rows)), key=lambda i: rows[i][2])
    e_min, t_min, v_min = rows[i_min]
    rising = v_end > 1.15 * v_min and i_min <= 0.8 * (len(rows) - 1) and t_end < t_min
    gap = v_end - t_end > 0.1 * l0 and v_end > 1.5 * t_end
    if not (rising or gap):
        return None
    evidence = f"at epoch {e_end:.0f} the validation loss is {v_end:.4g} against a train loss of {t_end:.4g}"
    if rising:
        evidence += f"; the validation loss was lowest at epoch {e_min:.0f} ({v_min:.4g}) and has risen since while the train loss kept falling"
    return Verdict(
        "overfitting",
        "Overfitting (large train/validation gap)",
        evidence,
        "More regularisation (weight decay, dropout, augmentation, label smoothing) or more data; keep the "
        f"checkpoint of epoch {e_min:.0f} or stop early.",
        {"train_loss": t_end, "val_loss": v_end, "best_val_epoch": e_min, "best_val_loss": v_min},
    )


def check_underfitting(c: Curves) -> Verdict | None:
    """No train/validation gap while the loss is still high."""
    rows = [
        (e, t, v)
        for e, t, v in zip(c.epochs, c.train_loss, c.val_loss)
        if v is not None and math.isfinite(t)
    ]
    l0 = _initial_loss(c)
    if len(rows) < 2 or not l0 or l0 <= 0:
        return None
    e_end, t_end, v_end = rows[-1]
    if t_end >= 0.25 * l0 and v_end - t_end <= 0.1 * t_end:
        return Verdict(
            "underfitting",
            "Underfitting (no train/validation gap)",
            f"at epoch {e_end:.0f} the train loss is still {t_end:.4g} ({100 * t_end / l0:.0f}% of the initial "
            f"{l0:.4g}) and the validation loss ({v_end:.4g}) is no worse",
            "The model is not fitting even the training data: train longer, use a bigger model, or lower the "
            "regularisation.",
            {"train_loss": t_end, "val_loss": v_end, "initial_loss": l0},
        )
    return None


#: In the order they are reported.
CHECKS: list[Callable[[Curves], Verdict | None]] = [
    check_flat_then_drop,
    check_plateau,
    check_decay_too_early,
    check_still_improving,
    check_overfitting,
    check_underfitting,
]
