"""Update/weight ratios, gradient norms and weight norms, per parameter and per layer."""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import torch

from tunekit.config import AUTO_FIRST_INTERVAL

from ._base import DiagnosticHook, never_fails
from ._cadence import AUTO_BUDGET, Calibration, auto_interval, clock, record_cadence
from ._layers import ParamLayout

__all__ = [
    "AUTO_BUDGET",
    "AUTO_CALIBRATION",
    "AUTO_INTERVALS",
    "UpdateRatioMonitor",
    "auto_interval",
]


def _norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    # torch._foreach_norm is what clip_grad_norm_ uses: one fused pass per
    # device and dtype instead of a kernel launch per tensor.
    return list(torch._foreach_norm(tensors)) if tensors else []


#: The cadences an automatic interval picks from: each divides the default histogram interval
#: (500), so the update histograms still have a measured update to show.
AUTO_INTERVALS = (AUTO_FIRST_INTERVAL, 50, 100, 250, 500)
#: Measurements at the first cadence that the automatic interval is chosen from.
AUTO_CALIBRATION = 2


def _scheduled_peak(scheduler: Any) -> float:
    """The LR a scheduler scales (tunekit's LambdaLR factors peak at 1): its largest base LR."""
    base = getattr(scheduler, "base_lrs", None) or [0.0]
    return max(float(b) for b in base)


class UpdateRatioMonitor(DiagnosticHook):
    """Measures ``‖w_after − w_before‖ / ‖w_before‖`` from the change the optimizer really made.

    Every ``interval`` steps it copies the trainable weights just before the
    optimizer step and compares after it, so momentum, Adam's scaling, weight
    decay and gradient clipping are all included. In the same step it takes
    gradient norms (before clipping) and weight norms; everything goes to the
    host in one transfer. Per layer, norms are combined over the layer's
    parameters (``sqrt(Σ‖Δ‖²) / sqrt(Σ‖w‖²)``).

    A layer whose ratio stays outside ``bounds`` for ``patience`` checks in a
    row gets one warning event (again only after it came back in bounds); a
    ratio of exactly 0 means the layer is not trained at all (not in the
    optimizer, or its learning rate is 0). While the schedule has the
    learning rate below ``anneal_fraction`` of its peak (a cosine tail, a late
    step decay, warmup's start), and while the learning rate is still rising
    (all of a warmup), small ratios are expected and not counted. The peak is
    the scheduler's base LR (what a warmup rises to) or the highest LR seen,
    whichever is larger: during a warmup the highest seen is the current LR.
    Parameters with ``requires_grad=False`` are frozen on purpose and not watched.

    Records: ``update_ratio/<layer>``, ``grad_norm/<layer>``,
    ``weight_norm/<layer>``, ``param_update_ratio/<parameter>``; on the steps
    divisible by ``keep_updates_every``, the update tensors as histograms
    ``updates/<parameter>`` (until the next step starts).

    With ``interval="auto"`` (the default) the first :data:`AUTO_CALIBRATION`
    measurements come every 20 steps and are timed, as are the steps between
    them; then the cadence becomes the smallest of :data:`AUTO_INTERVALS` whose
    measurements cost at most :data:`AUTO_BUDGET` (0.25%) of the training time (20
    when they are cheap against a step, up to 500 for a model with many
    parameters and little compute per step). The choice is a
    ``diagnostics_cadence`` event and part of :meth:`state_dict`, so a resumed
    run keeps it. A number is used as it is.

    Args:
        interval: steps between measurements, or ``"auto"`` (the measuring step
            costs about one extra copy of the weights and three norm passes).
        bounds: the healthy range of the ratio (the recipe aims near 1e-3).
        patience: checks in a row out of bounds before a warning.
        keep_updates_every: put the update tensors of steps divisible by this (for histograms).
        anneal_fraction: below this fraction of the peak learning rate, ratios
            under the lower bound are not counted (nor while the learning rate rises).
    """

    priority = 20

    def __init__(
        self,
        interval: int | Literal["auto"] = "auto",
        bounds: tuple[float, float] = (1e-4, 1e-2),
        patience: int = 3,
        keep_updates_every: int | None = None,
        anneal_fraction: float = 0.1,
    ) -> None:
        self.auto = interval == "auto"
        #: steps between measurements (while ``auto`` calibrates: the first of AUTO_INTERVALS)
        self.interval: int = AUTO_INTERVALS[0] if interval == "auto" else int(interval)
        self.bounds = bounds
        self.patience = patience
        self.keep_updates_every = keep_updates_every
        self.anneal_fraction = anneal_fraction
        self._peak_lr = 0.0
        # The LR at the previous measurement: an LR above it is a warmup still rising.
        self._last_lr: float | None = None
        #: the last measurement: layer -> ratio (None where the weights were all zero)
        self.last_ratios: dict[str, float | None] = {}
        self.last_step: int | None = None
        self.warnings: list[dict[str, Any]] = []
        self._out_of_bounds: dict[str, int] = {}
        self._warned: set[str] = set()
        self._layout: ParamLayout | None = None
        self._before: list[torch.Tensor] | None = None
        self._weight_norms: list[torch.Tensor] | None = None
        self._grad_norms: list[torch.Tensor] | None = None
        # Calibration of the automatic interval (while it is None, the interval is not chosen).
        self._chosen: int | None = None if self.auto else self.interval
        self._calibration: Calibration | None = None
        self._step_end: float | None = None
        self._timing = 0.0  # seconds of the measurement being taken

    @property
    def calibrating(self) -> bool:
        """Whether the automatic interval is still being chosen."""
        return self._chosen is None

    def due(self, step: int) -> bool:
        """Whether step number ``step`` (1-based) is measured."""
        return step % self.interval == 0

    @never_fails
    def before_train(self) -> None:
        self._layout = ParamLayout.of(self.trainer.module)
        if self.calibrating:
            h = self.keep_updates_every
            candidates = tuple(n for n in AUTO_INTERVALS if not h or h % n == 0)
            self._calibration = Calibration(candidates or AUTO_INTERVALS[:1], AUTO_CALIBRATION)

    @never_fails
    def after_phase_switch(self) -> None:
        # Another phase trains other parameters (the head alone, then the whole model), and
        # its schedule starts again: the watched layers and the peak LR start again too.
        self._layout = ParamLayout.of(self.trainer.module)
        self._peak_lr = 0.0
        self._last_lr = None
        self._out_of_bounds.clear()
        self._warned.clear()

    @never_fails
    def after_backward(self) -> None:
        t = self.trainer
        if self._layout is None or not t.dist.is_main or not self.due(t.step + 1):
            return
        params = self._layout.params
        started = self._clock(t.device)
        with torch.no_grad():
            self._before = [p.detach().clone() for p in params]
            self._weight_norms = _norms(self._before)
            grads = [p.grad.detach() for p in params if p.grad is not None]
            norms = iter(_norms(grads))
            zero = torch.zeros((), device=t.device)
            self._grad_norms = [next(norms) if p.grad is not None else zero for p in params]
        if self.calibrating:
            self._timing = self._clock(t.device) - started

    @never_fails
    def after_step(self) -> None:
        before, weight_norms, grad_norms = self._before, self._weight_norms, self._grad_norms
        self._before = self._weight_norms = self._grad_norms = None
        t = self.trainer
        if before is None or weight_norms is None or grad_norms is None or self._layout is None:
            self._time_step(measured=False)
            return
        started = self._clock(t.device)
        layout = self._layout
        with torch.no_grad():
            # In place: the copy becomes w_before - w_after (no second model-sized buffer).
            torch._foreach_sub_(before, [p.detach() for p in layout.params])
            norms = [*_norms(before), *weight_norms, *grad_norms]
            values = torch.stack([n.float().to(t.device) for n in norms]).tolist()  # one transfer
        n = len(layout.params)
        d, w, g = values[:n], values[n : 2 * n], values[2 * n :]
        if self.keep_updates_every and t.step % self.keep_updates_every == 0:
            torch._foreach_neg_(before)  # w_after - w_before
            for name, delta in zip(layout.names, before):
                self.metrics.put_histogram(f"updates/{name}", delta)
        lr = max(float(group["lr"]) for group in t.optimizer.param_groups)
        self._peak_lr = max(self._peak_lr, lr)
        rising = self._last_lr is not None and lr > self._last_lr
        self._last_lr = lr
        peak = max(self._peak_lr, _scheduled_peak(t.scheduler))
        annealed = rising or lr < self.anneal_fraction * peak
        self._report(layout, d, w, g, t.step, annealed=annealed)
        if self._calibration is not None:
            self._calibration.costs.append(self._timing + self._clock(t.device) - started)
            self._time_step(measured=True)

    def _clock(self, device: torch.device) -> float:
        """Now, with the device's queue drained while the interval is being chosen."""
        return clock(device) if self.calibrating else time.perf_counter()

    def _time_step(self, *, measured: bool) -> None:
        """Times the steps between measurements and, after the calibration, picks the interval."""
        calibration = self._calibration
        if calibration is None or not self.trainer.dist.is_main:
            return  # only rank 0 measures
        now = time.perf_counter()
        # A measured step's own time holds its measurement: only the others time a step.
        if not measured and self._step_end is not None:
            calibration.steps.append(now - self._step_end)
        self._step_end = now
        if (choice := calibration.choice()) is not None:
            self._choose(*choice)

    def _choose(self, interval: int, cost_s: float, step_s: float) -> None:
        self._chosen = self.interval = interval
        self._calibration, self._step_end = None, None
        record_cadence(self.metrics, "update ratios", "update ratios", interval, cost_s, step_s)

    def _report(
        self,
        layout: ParamLayout,
        d: list[float],
        w: list[float],
        g: list[float],
        step: int,
        *,
        annealed: bool,
    ) -> None:
        scalars: dict[str, float] = {}
        for name, dn, wn in zip(layout.names, d, w):
            if wn > 0:  # a ratio to an all-zero tensor (a fresh bias) means nothing
                scalars[f"param_update_ratio/{name}"] = dn / wn
        layer_d = layout.per_layer([x * x for x in d])
        layer_w = layout.per_layer([x * x for x in w])
        layer_g = layout.per_layer([x * x for x in g])
        ratios: dict[str, float | None] = {}
        for layer, dn, wn, gn in zip(layout.layers, layer_d, layer_w, layer_g):
            ratio = dn / wn if wn > 0 else None
            ratios[layer] = ratio
            if ratio is not None:
                scalars[f"update_ratio/{layer}"] = ratio
            scalars[f"grad_norm/{layer}"] = gn
            scalars[f"weight_norm/{layer}"] = wn
        self.last_ratios, self.last_step = ratios, step
        self.metrics.put_scalars(scalars)
        self._check_bounds(ratios, step, annealed)

    def _check_bounds(self, ratios: dict[str, float | None], step: int, annealed: bool) -> None:
        low, high = self.bounds
        for layer, ratio in ratios.items():
            if ratio is None or not math.isfinite(ratio):
                continue
            if low <= ratio <= high or (annealed and ratio < low):
                self._out_of_bounds.pop(layer, None)
                self._warned.discard(layer)
                continue
            count = self._out_of_bounds.get(layer, 0) + 1
            self._out_of_bounds[layer] = count
            if count >= self.patience and layer not in self._warned:
                self._warned.add(layer)
                self._warn(layer, ratio, count, step)

    def _warn(self, layer: str, ratio: float, count: int, step: int) -> None:
        low, high = self.bounds
        if ratio == 0:
            hint = (
                "it is not being trained at all: its parameters are not in the optimizer, "
                "or their learning rate is 0"
            )
        elif ratio > high:
            hint = f"the learning rate is likely too high for this layer (aim near 1e-3, healthy up to {high:g})"
        else:
            hint = f"the learning rate is likely too low for this layer (aim near 1e-3, healthy from {low:g})"
        message = f"layer {layer!r}: update/weight ratio {ratio:.3g} outside [{low:g}, {high:g}] for {count} checks in a row; {hint}"
        warning = {
            "layer": layer,
            "ratio": ratio,
            "checks": count,
            "step": step,
            "message": message,
        }
        self.warnings.append(warning)
        self.metrics.event(
            "ratio_warning", message, level="warning", step=step, layer=layer, ratio=ratio
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "out_of_bounds": dict(self._out_of_bounds),
            "warned": sorted(self._warned),
            "peak_lr": self._peak_lr,
            "last_lr": self._last_lr,
            "interval": self._chosen,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._out_of_bounds = {str(k): int(v) for k, v in state.get("out_of_bounds", {}).items()}
        self._warned = set(state.get("warned", []))
        self._peak_lr = float(state.get("peak_lr", 0.0))
        last = state.get("last_lr")
        self._last_lr = None if last is None else float(last)
        chosen = state.get("interval")
        if self.auto and chosen is not None:
            # The cadence this run chose before it was stopped: no second calibration.
            self._chosen = self.interval = int(chosen)
            self._calibration = None
