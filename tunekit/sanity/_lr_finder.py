"""Step 3 of the recipe: find a learning rate that makes the loss fall.

Three measurements, each starting from the same restored state:

1. an LR range test: the LR grows exponentially each step (default 1e-7 to
   10 over 100 steps) while the smoothed loss is recorded; it stops once the
   loss passes 4x its best. The suggestion is where the smoothed loss falls
   fastest against log LR, with non-finite points dropped first, or "no
   suggestion" with the reason;
2. a cross-check by short runs (about 100 steps) at 1e-1, 1e-2, 1e-3, 1e-4
   and the suggestion, with a small weight decay on; the LR whose loss falls
   most is the chosen one;
3. the update/weight ratio ||w_after - w_before|| / ||w_before|| per weight
   tensor at the chosen LR (a healthy step moves weights by about 1e-3).

torch-lr-finder and Lightning's tuner run the same range test, but each is
tied to its own loop (a criterion on ``model(inputs)`` or a LightningModule);
this one runs on the shared :class:`Objective`, so classifiers, detectors and
recipes' tasks go through the same code, and it restores RNGs too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ._base import (
    LossFn,
    Objective,
    SanityError,
    Status,
    Verdict,
    cycle,
    finite_or_none,
    model_device,
    prefetch,
    require_trainable,
)
from ._state import preserved, set_hyper

CHECK_RANGE = "lr range test"
CHECK_CROSS = "lr cross-check"
CHECK_RATIO = "update/weight ratio"

#: The fixed LRs the cross-check always tries (the suggestion is added to them).
CROSS_CHECK_LRS = (1e-1, 1e-2, 1e-3, 1e-4)
#: A healthy update moves each weight tensor by about this fraction per step.
TARGET_RATIO = 1e-3
#: The median ratio over layers passes inside this band and warns outside it. The
#: lower end is the diagnostics hooks' (1e-4); the upper end is wider than theirs
#: (1e-2) because this is measured in the first steps from initialisation at the
#: peak LR with no warmup, where ratios run high: about 0.04 for the digits CNN
#: at LR 0.1, which then trains to 99.7%. The hooks track it during training.
RATIO_BAND = (1e-4, 1e-1)


# -- 1. range test -------------------------------------------------------


@dataclass
class LRRangeResult:
    """What :func:`lr_range_test` measured.

    Attributes:
        lrs, losses: the LR and raw loss of every step run.
        smoothed: the bias-corrected exponential moving average of the loss
            (None where the raw loss was not finite).
        suggestion: where the smoothed loss falls fastest against log LR, or None.
        reason: why there is (or is no) suggestion.
        min_loss_lr: the LR at the lowest smoothed loss.
        stop_reason: why the sweep ended.
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float | None]
    suggestion: float | None
    reason: str
    min_loss_lr: float | None
    stop_reason: str
    start_lr: float
    end_lr: float
    num_iter: int
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["losses"] = [finite_or_none(x) for x in self.losses]
        return d

    def plot_data(self) -> dict[str, Any]:
        """LR, raw and smoothed loss per step, and the suggestion (None when there is none)."""
        return {
            "lr": list(self.lrs),
            "loss": [finite_or_none(x) for x in self.losses],
            "smoothed": list(self.smoothed),
            "suggestion": self.suggestion,
        }

    def plot(self) -> Any:
        """A plotly figure: loss against LR (log axis), smoothed, with the suggestion marked."""
        import plotly.graph_objects as go

        data = self.plot_data()
        fig = go.Figure(
            [
                go.Scatter(x=data["lr"], y=data["loss"], name="loss", mode="lines", opacity=0.35),
                go.Scatter(x=data["lr"], y=data["smoothed"], name="smoothed loss", mode="lines"),
            ]
        )
        suggestion = self.suggestion
        if suggestion is not None:
            # A marker on the smoothed curve (a shape on a log axis would need
            # log10 coordinates, which plotly handles differently across versions).
            at = min(range(len(self.lrs)), key=lambda i: abs(math.log(self.lrs[i] / suggestion)))
            fig.add_trace(
                go.Scatter(
                    x=[suggestion],
                    y=[data["smoothed"][at]],
                    name=f"suggestion {suggestion:.3g}",
                    mode="markers",
                    marker={"size": 12, "symbol": "circle-open", "line": {"width": 3}},
                )
            )
        finite = [s for s in data["smoothed"] if s is not None]
        # The raw loss can jump by orders of magnitude at the end of the sweep:
        # show the range where the smoothed curve lives.
        top = 1.5 * max([*finite[: max(1, len(finite) // 2)], min(finite) * 4]) if finite else None
        fig.update_layout(
            title=f"LR range test: {self.verdict.status}",
            xaxis={"title": "learning rate", "type": "log"},
            yaxis={"title": "loss", "range": [0, top] if top else None},
        )
        return fig


def smooth(losses: Sequence[float], beta: float) -> list[float | None]:
    """Bias-corrected exponential moving average; non-finite points are skipped (None)."""
    out: list[float | None] = []
    avg, n = 0.0, 0
    for x in losses:
        if not math.isfinite(x):
            out.append(None)
            continue
        n += 1
        avg = beta * avg + (1 - beta) * x
        out.append(avg / (1 - beta**n))
    return out


def suggest_lr(
    lrs: Sequence[float],
    smoothed: Sequence[float | None],
    *,
    skip_start: int = 10,
    skip_end: int = 1,
) -> tuple[float | None, str]:
    """The LR where the smoothed loss falls fastest against log LR, before its minimum.

    Non-finite points are dropped first. Returns ``(None, reason)`` when there
    is nothing to suggest, never raises.
    """
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
    slope = np.gradient(y[: lowest + 1], x[: lowest + 1])
    i = int(np.argmin(slope))
    return float(10 ** x[i]), f"steepest fall of the smoothed loss against log LR{note}"


def lr_range_test(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    loss_fn: LossFn | None = None,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    beta: float = 0.95,
    diverge_factor: float = 4.0,
    skip_start: int = 10,
    objective: Objective | None = None,
) -> LRRangeResult:
    """Runs an exponential LR sweep and suggests an LR; model, optimizer and RNGs are restored.

    Every parameter group gets the same LR at each step. The sweep stops when
    the smoothed loss passes ``diverge_factor`` times its best, or the loss is
    not finite.

    Args:
        model, loader, loss_fn: as in :func:`check_initial_loss` (``loss_fn=None``: detector).
        optimizer: the optimizer to sweep (its other settings, weight decay included, stay).
        start_lr, end_lr, num_iter: the sweep.
        beta: smoothing of the loss (an exponential moving average, bias-corrected).
            0.95, as torch-lr-finder: its lag is about 20 steps, a fifth of a
            100-step sweep; 0.98 (fastai, Lightning) lags about 50 steps, which
            shifts the steepest point of the smoothed curve toward larger LRs.
        skip_start: points at the start left out of the suggestion (the average is still settling).

    Example:
        >>> result = tunekit.lr_range_test(model, opt, loader, nn.CrossEntropyLoss())  # doctest: +SKIP
        >>> result.suggestion, result.reason  # doctest: +SKIP
        (0.012, 'steepest fall of the smoothed loss against log LR')
    """
    if not 0 < start_lr < end_lr:
        raise SanityError(
            f"{CHECK_RANGE}: start_lr={start_lr} and end_lr={end_lr} need 0 < start_lr < end_lr"
        )
    if num_iter < 2:
        raise SanityError(
            f"{CHECK_RANGE}: num_iter={num_iter} is not allowed; use 2 or more (100 is usual)"
        )
    if not 0 <= beta < 1:
        raise SanityError(f"{CHECK_RANGE}: beta={beta} is not allowed; use a value in [0, 1)")
    require_trainable(model, CHECK_RANGE)
    objective = objective or Objective(loss_fn, what=CHECK_RANGE)
    device = model_device(model)
    ratio = end_lr / start_lr
    lrs: list[float] = []
    losses: list[float] = []
    stop_reason = f"reached end_lr {end_lr:g}"
    with preserved(model, optimizer, [loader]):
        model.train()
        batches = cycle(loader, CHECK_RANGE)
        best = math.inf
        avg = 0.0
        for i in range(num_iter):
            lr = start_lr * ratio ** (i / (num_iter - 1))
            set_hyper(optimizer, lr=lr)
            out = objective(model, next(batches), device)
            loss = float(out.loss.detach())
            lrs.append(lr)
            losses.append(loss)
            if not math.isfinite(loss):
                stop_reason = f"loss not finite at LR {lr:.3g}"
                break
            # Every loss so far was finite (the loop stops at the first that is not).
            avg = beta * avg + (1 - beta) * loss
            smoothed = avg / (1 - beta ** (i + 1))
            best = min(best, smoothed)
            if smoothed > diverge_factor * best:
                stop_reason = f"loss passed {diverge_factor:g}x its best at LR {lr:.3g}"
                break
            objective.step(model, optimizer, out.loss)
    sm = smooth(losses, beta)
    suggestion, reason = suggest_lr(lrs, sm, skip_start=skip_start)
    finite = [(s, lr) for s, lr in zip(sm, lrs) if s is not None]
    min_loss_lr = min(finite)[1] if finite else None
    if suggestion is not None:
        verdict = Verdict(
            CHECK_RANGE,
            "PASS",
            f"suggestion {suggestion:.3g}",
            f"a fall in [{start_lr:g}, {end_lr:g}]",
            f"{reason}; {stop_reason}",
        )
    elif not math.isfinite(losses[0]):
        verdict = Verdict(
            CHECK_RANGE,
            "FAIL",
            "loss not finite at the first step",
            f"a fall in [{start_lr:g}, {end_lr:g}]",
            "the loss is Inf/NaN before any update",
            "check the inputs and the loss for NaN/Inf, and the initialisation",
        )
    else:
        verdict = Verdict(
            CHECK_RANGE,
            "WARN",
            "no suggestion",
            f"a fall in [{start_lr:g}, {end_lr:g}]",
            f"{reason}; {stop_reason}",
            "widen the sweep (start_lr/end_lr), run more iterations, or check that the model can learn (overfit check)",
        )
    return LRRangeResult(
        lrs,
        losses,
        sm,
        suggestion,
        reason,
        min_loss_lr,
        stop_reason,
        start_lr,
        end_lr,
        num_iter,
        verdict,
    )


# -- 2. cross-check by short runs -----------------------------------------


@dataclass
class ShortRun:
    """One short run at a fixed LR."""

    lr: float
    losses: list[float]
    start: float  # loss before the first update
    end: float  # mean loss over the last window
    fall: float  # (start - end) / start; -inf when the run diverged
    diverged: bool


@dataclass
class CrossCheckResult:
    """What :func:`cross_check_lrs` measured: one short run per LR, and the chosen LR."""

    runs: list[ShortRun]
    chosen: float | None
    num_iter: int
    weight_decay: float
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for r in d["runs"]:
            r["losses"] = [finite_or_none(x) for x in r["losses"]]
            for k in ("start", "end", "fall"):
                r[k] = finite_or_none(r[k])
        return d

    def plot_data(self) -> dict[str, Any]:
        return {
            "lr": [r.lr for r in self.runs],
            "curves": [[finite_or_none(x) for x in r.losses] for r in self.runs],
            "fall": [finite_or_none(r.fall) for r in self.runs],
            "chosen": self.chosen,
        }

    def plot(self) -> Any:
        """A plotly figure: the loss curve of every short run, the chosen LR highlighted."""
        import plotly.graph_objects as go

        fig = go.Figure()
        for r in self.runs:
            fig.add_trace(
                go.Scatter(
                    y=[finite_or_none(x) for x in r.losses],
                    name=f"lr {r.lr:.2g}" + (" (chosen)" if r.lr == self.chosen else ""),
                    mode="lines",
                    line={"width": 3 if r.lr == self.chosen else 1.2},
                )
            )
        fig.update_layout(
            title=f"LR cross-check: {self.verdict.status}", xaxis_title="step", yaxis_title="loss"
        )
        return fig


def cross_check_lrs(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    loss_fn: LossFn | None = None,
    *,
    lrs: Sequence[float] = CROSS_CHECK_LRS,
    num_iter: int = 100,
    weight_decay: float = 1e-4,
    objective: Objective | None = None,
) -> CrossCheckResult:
    """Short runs at each LR from the same state and data; the LR whose loss falls most wins.

    The fall is measured from the loss before the first update (the same for
    every LR) to the mean loss over the last tenth of the run (at least 5
    steps). A run whose loss is not finite, or ends above 4x its start, is
    marked diverged and cannot win.
    """
    require_trainable(model, CHECK_CROSS)
    if num_iter < 10:
        raise SanityError(
            f"{CHECK_CROSS}: num_iter={num_iter} is not allowed; use 10 or more (100 is usual)"
        )
    objective = objective or Objective(loss_fn, what=CHECK_CROSS)
    device = model_device(model)
    window = max(5, num_iter // 10)
    runs: list[ShortRun] = []
    for lr in sorted(set(lrs), reverse=True):
        losses: list[float] = []
        with preserved(model, optimizer, [loader]):
            model.train()
            set_hyper(optimizer, lr=lr, weight_decay=weight_decay)
            batches = cycle(loader, CHECK_CROSS)
            for _ in range(num_iter):
                out = objective(model, next(batches), device)
                loss = float(out.loss.detach())
                losses.append(loss)
                if not math.isfinite(loss):
                    break
                objective.step(model, optimizer, out.loss)
        runs.append(_short_run(lr, losses, window, num_iter))
    healthy = [r for r in runs if not r.diverged]
    best = max(healthy, key=lambda r: r.fall, default=None)
    chosen = best.lr if best is not None and best.fall > 0 else None
    return CrossCheckResult(
        runs, chosen, num_iter, weight_decay, _cross_verdict(runs, best, chosen)
    )


def _short_run(lr: float, losses: list[float], window: int, num_iter: int) -> ShortRun:
    # The loss before the first update is the same in every run (same state,
    # same first batch), so falls are comparable; a mean over the first steps
    # would reward a run whose loss spiked there.
    start = losses[0] if math.isfinite(losses[0]) else math.inf
    diverged = len(losses) < num_iter or not all(map(math.isfinite, losses))
    end = float(np.mean(losses[-window:])) if not diverged else math.inf
    diverged = diverged or not math.isfinite(start) or end > 4 * start
    fall = (start - end) / start if not diverged and start > 0 else -math.inf
    return ShortRun(lr, losses, start, end, fall, diverged)


def _cross_verdict(runs: list[ShortRun], best: ShortRun | None, chosen: float | None) -> Verdict:
    tried = ", ".join(f"{r.lr:.2g}" for r in runs)
    expected = f"the loss falls at one of {tried}"
    if chosen is None or best is None:
        diverged = [f"{r.lr:.2g}" for r in runs if r.diverged]
        what = f"diverged at {', '.join(diverged)}; " if diverged else ""
        return Verdict(
            CHECK_CROSS,
            "FAIL",
            "no LR made the loss fall",
            expected,
            f"{what}the loss did not fall at any other LR",
            "run the overfit check first; check the data, the labels and the initialisation",
        )
    falls = ", ".join(f"{r.lr:.2g}: {'diverged' if r.diverged else f'{r.fall:+.0%}'}" for r in runs)
    status: Status = "PASS" if best.fall >= 0.1 else "WARN"
    return Verdict(
        CHECK_CROSS,
        status,
        f"chosen {chosen:.3g} (loss -{best.fall:.0%})",
        expected,
        f"fall per LR: {falls}",
        ""
        if status == "PASS"
        else "the best LR barely moves the loss: run longer, or look at the model and data",
    )


# -- 3. update/weight ratio ----------------------------------------------


@dataclass
class UpdateRatioResult:
    """||Δw|| / ||w|| per layer at one LR, averaged over the last half of a few steps."""

    lr: float
    ratios: dict[str, float]
    median: float | None
    steps: int
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratios"] = {k: finite_or_none(v) for k, v in self.ratios.items()}
        d["median"] = finite_or_none(self.median) if self.median is not None else None
        return d

    def plot_data(self) -> dict[str, Any]:
        return {
            "names": list(self.ratios),
            "ratios": [finite_or_none(v) for v in self.ratios.values()],
            "target": TARGET_RATIO,
        }

    def plot(self) -> Any:
        """A plotly bar chart of the ratio per weight tensor (log axis) with the 1e-3 target line."""
        import plotly.graph_objects as go

        data = self.plot_data()
        lo, hi = RATIO_BAND
        fig = go.Figure(go.Bar(x=data["names"], y=data["ratios"], name="update/weight"))
        for y, name, dash in (
            (TARGET_RATIO, "target 1e-3", "dash"),
            (lo, "band", "dot"),
            (hi, "band", "dot"),
        ):
            fig.add_trace(
                go.Scatter(
                    x=[data["names"][0], data["names"][-1]] if data["names"] else [],
                    y=[y, y],
                    name=name,
                    mode="lines",
                    line={"dash": dash},
                    showlegend=name != "band" or y == lo,
                )
            )
        fig.update_layout(
            title=f"Update/weight ratio at LR {self.lr:.3g}: {self.verdict.status}",
            yaxis={"type": "log", "title": "||Δw|| / ||w||"},
        )
        return fig


def update_ratio(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    loss_fn: LossFn | None = None,
    *,
    lr: float,
    steps: int = 10,
    objective: Objective | None = None,
) -> UpdateRatioResult:
    """Measures ||w_after - w_before|| / ||w_before|| per layer over a few steps at ``lr``.

    Layers and norms are combined the way the diagnostics hooks do it
    (:class:`tunekit.diagnostics.ParamLayout`: ``sqrt(Σ‖Δ‖²) / sqrt(Σ‖w‖²)``
    over a module's parameters), so the number here and the one they track
    during training are the same quantity. Layers whose weights are all zero
    are left out. The first half of the steps is left out of the average so
    that momentum has built up. Model, optimizer and RNGs are restored afterwards.
    """
    from tunekit.diagnostics import ParamLayout

    require_trainable(model, CHECK_RATIO)
    if steps < 2:
        raise SanityError(f"{CHECK_RATIO}: steps={steps} is not allowed; use 2 or more")
    objective = objective or Objective(loss_fn, what=CHECK_RATIO)
    device = model_device(model)
    layout = ParamLayout.of(model)
    sums = [0.0] * len(layout.layers)
    counted = 0
    with preserved(model, optimizer, [loader]), torch.enable_grad():
        model.train()
        set_hyper(optimizer, lr=lr)
        batches = cycle(loader, CHECK_RATIO)
        for step in range(steps):
            before = [p.detach().clone() for p in layout.params]
            out = objective(model, next(batches), device)
            objective.step(model, optimizer, out.loss)
            if step < steps // 2:
                continue
            counted += 1
            with torch.no_grad():
                d = [float((p - b).norm()) ** 2 for p, b in zip(layout.params, before)]
                w = [float(b.norm()) ** 2 for b in before]
            for i, (dn, wn) in enumerate(zip(layout.per_layer(d), layout.per_layer(w))):
                sums[i] += dn / wn if wn > 0 else math.nan
    ratios = {
        layer: total / counted for layer, total in zip(layout.layers, sums) if not math.isnan(total)
    }
    finite = [v for v in ratios.values() if math.isfinite(v)]
    median = float(np.median(finite)) if finite else None
    return UpdateRatioResult(lr, ratios, median, steps, _ratio_verdict(median, lr))


def _ratio_verdict(median: float | None, lr: float) -> Verdict:
    lo, hi = RATIO_BAND
    expected = f"about {TARGET_RATIO:g} (early steps: {lo:g} to {hi:g})"
    if median is None:
        return Verdict(
            CHECK_RATIO,
            "WARN",
            "not measured",
            expected,
            "no finite ratio (no weight tensors, or non-finite weights)",
            "check the model has conv or linear weights and a finite loss",
        )
    if lo <= median <= hi:
        return Verdict(
            CHECK_RATIO,
            "PASS",
            f"median {median:.2g} at LR {lr:.3g}",
            expected,
            "updates are a healthy fraction of the weights",
        )
    direction = "large" if median > hi else "small"
    fix = "lower the LR" if median > hi else "raise the LR"
    return Verdict(
        CHECK_RATIO,
        "WARN",
        f"median {median:.2g} at LR {lr:.3g}",
        expected,
        f"updates are {direction} against the weights",
        f"{fix} toward a ratio of about 1e-3",
    )


# -- all three -----------------------------------------------------------


@dataclass
class LRCheckResult:
    """The range test, the cross-check, the ratio at the chosen LR, and the ranges for a search."""

    range_test: LRRangeResult
    cross_check: CrossCheckResult
    ratio: UpdateRatioResult | None
    chosen: float | None
    search_space: dict[str, list[float]] = field(default_factory=dict)

    @property
    def verdicts(self) -> list[Verdict]:
        out = [self.range_test.verdict, self.cross_check.verdict]
        if self.ratio is not None:
            out.append(self.ratio.verdict)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "suggestion": self.range_test.suggestion,
            "search_space": self.search_space,
            "range_test": self.range_test.to_dict(),
            "cross_check": self.cross_check.to_dict(),
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
    weight_decay: float = 1e-4,
    ratio_steps: int = 10,
    cache_mb: float = 512.0,
    objective: Objective | None = None,
) -> LRCheckResult:
    """Range test, cross-check by short runs (with the suggestion added), and the ratio at the chosen LR.

    The batches are loaded once and held in memory when they fit in
    ``cache_mb`` (every run then reads the same batches, which also makes the
    comparison fairer); otherwise each run reads the loader again from the
    same generator state, which gives the same batches at the cost of loading
    them again.
    """
    with preserved(model, None, [loader]):
        cached = prefetch(
            loader, max(num_iter, cross_check_iter, ratio_steps), CHECK_RANGE, int(cache_mb * 2**20)
        )
    if cached is not None:
        loader = cached
    rt = lr_range_test(
        model,
        optimizer,
        loader,
        loss_fn,
        start_lr=start_lr,
        end_lr=end_lr,
        num_iter=num_iter,
        objective=objective,
    )
    lrs = list(candidates)
    if rt.suggestion is not None and all(abs(math.log10(rt.suggestion / x)) > 1e-3 for x in lrs):
        lrs.append(rt.suggestion)
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
    ratio = None
    space: dict[str, list[float]] = {}
    if cc.chosen is not None:
        ratio = update_ratio(
            model, optimizer, loader, loss_fn, lr=cc.chosen, steps=ratio_steps, objective=objective
        )
        space = search_space(cc.chosen, optimizer)
    return LRCheckResult(rt, cc, ratio, cc.chosen, space)
