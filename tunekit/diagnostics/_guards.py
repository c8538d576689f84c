"""Guards: stop a step whose loss or gradient is not finite; record loss spikes."""

from __future__ import annotations

import math
import time
from collections import deque
from contextlib import nullcontext
from typing import Any, Literal

import torch
from torch import nn

from tunekit.core import rng_state, set_rng_state

from ._base import DiagnosticHook, log, never_fails
from ._cadence import Calibration, clock, record_cadence
from ._errors import NonFiniteError

#: The gradient-check cadences ``gradient_check_interval="auto"`` picks from.
CHECK_INTERVALS = (1, 2, 5, 10, 20, 50)
#: Steps before the check is timed (the first steps are slow), then the checks timed.
CHECK_WARMUP, CHECK_CALIBRATION = 5, 10


class Guards(DiagnosticHook):
    """Checks every step, before the optimizer moves any weight.

    The loss and the global gradient norm (which is non-finite exactly when
    some gradient element is, or when the norm itself overflows) reach the
    host together, in one transfer per step; they are also this step's
    ``train/step_loss`` and ``grad_norm/total`` records. A non-finite value
    raises :class:`NonFiniteError` from ``after_backward``, so the step is not
    taken and the weights stay as they were. With an fp16 GradScaler the
    gradients are not checked: the scaler skips steps with inf gradients by
    design.

    A loss above ``spike_factor`` times the median of the last
    ``spike_window`` losses, and above all of them, is a ``loss_spike`` event.

    With ``gradient_check_interval`` > 1 the gradients are checked on those
    steps only (and the global norm recorded then): a non-finite gradient in
    between is applied, and the next step's loss, computed with the broken
    weights, stops the run there, naming the layer whose output went bad.
    With ``"auto"`` (the default) every step is checked at first; steps 6 to 15
    time the check against the step, and the interval becomes the smallest of
    :data:`CHECK_INTERVALS` that keeps the checks under 0.25% of the training
    time: every step on a GPU or a model with real compute per step, every 5 to
    20 on a small CPU model with many parameters. The choice is a
    ``diagnostics_cadence`` event and part of :meth:`state_dict`. Under
    distributed training ``"auto"`` checks every step: every rank must stop at
    the same step, and ranks timing themselves could choose differently.

    A host that learns the loss only after the optimizer step (``tunekit.watch``
    on a user's own loop, the Lightning callback) calls ``after_backward`` with
    no loss: the gradients are checked then, before any weight moves (a bad one
    is blamed on the first module whose output is non-finite when the step's
    forward is re-run, else on the first bad gradient), and the loss at
    ``after_step``, where a non-finite loss raises with ``taken=True``. On
    steps whose gradients are not checked, such a host's model output is
    (a few microseconds): a forward gone non-finite still stops its own step
    before the weights move.

    Args:
        check_gradients: check the gradient norm too (the loss is always checked).
        gradient_check_interval: steps between gradient checks, or ``"auto"``.
        spike_factor: how many times the window's median a spike must reach.
        spike_window: losses in the moving window.
    """

    priority = 10  # first after backward: nothing else should read a bad step

    def __init__(
        self,
        check_gradients: bool = True,
        spike_factor: float = 3.0,
        spike_window: int = 50,
        gradient_check_interval: int | Literal["auto"] = "auto",
    ) -> None:
        self.check_gradients = check_gradients
        self.auto = gradient_check_interval == "auto"
        #: steps between gradient checks (1 while ``auto`` calibrates)
        self.gradient_check_interval = 1 if self.auto else int(gradient_check_interval)
        self._chosen: int | None = None if self.auto else self.gradient_check_interval
        self._calibration: Calibration | None = None
        self._last_check: tuple[float, float] | None = None  # (when, cost) of the last timed one
        self.spike_factor = spike_factor
        self.spike_window = spike_window
        self.spikes: list[dict[str, Any]] = []
        self._window: deque[float] = deque(maxlen=spike_window)
        self._params: list[tuple[str, nn.Parameter]] = []
        self._uniform = True
        # The gradient check's result, when the loss comes at after_step (see the class doc).
        self._deferred: tuple[float | None] | None = None
        # Such a host's model output on the step being taken, and the hook that keeps it.
        self._output: Any = None
        self._output_hook: Any = None

    @never_fails
    def before_train(self) -> None:
        self._watch_trainable()
        t = self.trainer
        if self._chosen is None:
            if t.dist.distributed or not self.check_gradients or t.scaler is not None:
                self._chosen = 1  # see the class doc; with a scaler nothing is checked
            else:
                self._calibration = Calibration(CHECK_INTERVALS, CHECK_CALIBRATION)
        if getattr(t, "loss_after_step", False) and self._output_hook is None:
            self._output_hook = t.module.register_forward_hook(self._keep_output)

    def _keep_output(self, module: nn.Module, _args: Any, output: Any) -> None:
        if module.training and torch.is_grad_enabled():
            self._output = output

    def after_train(self) -> None:
        if self._output_hook is not None:
            self._output_hook.remove()
            self._output_hook = None
        self._output = None

    @never_fails
    def after_phase_switch(self) -> None:
        self._watch_trainable()  # a new phase trains other parameters

    def _watch_trainable(self) -> None:
        t = self.trainer
        self._params = [(n, p) for n, p in t.module.named_parameters() if p.requires_grad]
        # All float32 on the loss's device: the norms stack with the loss as they are.
        self._uniform = all(
            p.dtype == torch.float32 and p.device == t.device for _, p in self._params
        )

    def _gradients_due(self) -> bool:
        t = self.trainer
        return (
            self.check_gradients
            and t.scaler is None
            and (t.step + 1) % self.gradient_check_interval == 0
        )

    @never_fails
    def after_backward(self) -> None:
        t = self.trainer
        self._deferred = None
        if t.loss is None:
            self._check_gradients_alone()
            return
        loss_t = t.loss.detach().reshape(())
        grad_norm: float | None = None
        if self._gradients_due() and (grads := self._grads()):
            # One fused norm per tensor (as clip_grad_norm_ does), sent to the host with
            # the loss in one transfer; the global norm is combined there (hypot: no overflow).
            values = self._norms_to_host([loss_t], grads)
            grad_norm = math.hypot(*values[1:])
        else:
            values = [float(loss_t)]
        loss = values[0]
        if not math.isfinite(loss):
            raise self._stop("loss")
        if grad_norm is not None and not math.isfinite(grad_norm):
            raise self._stop("gradient")
        self.metrics.put("train/step_loss", loss)
        if grad_norm is not None:
            self.metrics.put("grad_norm/total", grad_norm)
        self._check_spike(loss, t.step + 1)

    def _check_gradients_alone(self) -> None:
        grad_norm: float | None = None
        output, self._output = self._output, None
        if self._gradients_due() and (grads := self._grads()):
            grad_norm = math.hypot(*self._norms_to_host([], grads))
            if not math.isfinite(grad_norm):
                raise self._stop("gradient", outputs_first=True)
        elif output is not None and _has_non_finite(output):
            raise self._stop("output")
        self._deferred = (grad_norm,)

    def _norms_to_host(self, head: list[torch.Tensor], grads: list[torch.Tensor]) -> list[float]:
        """``head`` and the gradients' norms, on the host; timed while ``auto`` calibrates."""
        t = self.trainer
        timed = self._calibration is not None and t.step >= CHECK_WARMUP
        started = clock(t.device) if timed else 0.0
        values = self._to_host([*head, *torch._foreach_norm(grads)])
        if timed:
            self._time_check(started, time.perf_counter() - started)
        return values

    def _time_check(self, started: float, cost: float) -> None:
        """Adds one timed check, and the step since the last one without its check; picks
        the interval once there are enough."""
        calibration = self._calibration
        assert calibration is not None
        calibration.costs.append(cost)
        if self._last_check is not None:
            when, last_cost = self._last_check
            calibration.steps.append(started - when - last_cost)
        self._last_check = (started, cost)
        if (choice := calibration.choice()) is None:
            return
        interval, cost_s, step_s = choice
        self._chosen = self.gradient_check_interval = interval
        self._calibration = self._last_check = None
        record_cadence(self.metrics, "gradient checks", "gradients", interval, cost_s, step_s)

    def _grads(self) -> list[torch.Tensor]:
        return [p.grad for _, p in self._params if p.grad is not None]

    def _to_host(self, scalars: list[torch.Tensor]) -> list[float]:
        """Zero-dimensional tensors as floats, in one transfer."""
        device = self.trainer.device
        # Float32 on one device (the usual case) stack as they are: a conversion per
        # tensor would cost more than the norms on a small model.
        if not (self._uniform and scalars[0].dtype == torch.float32):
            scalars = [x.to(device, torch.float32) for x in scalars]
        return list(torch.stack(scalars).tolist())

    @never_fails
    def after_step(self) -> None:
        deferred, self._deferred = self._deferred, None
        t = self.trainer
        if deferred is None or t.loss is None:
            return
        # A host that gets the loss after the step has read it as a number already.
        loss = getattr(t, "loss_value", None)
        if loss is None:
            loss = float(t.loss.detach().float().mean().item())
        if not math.isfinite(loss):
            raise self._stop("loss", step=t.step, taken=True)
        self.metrics.put("train/step_loss", loss)
        if deferred[0] is not None:
            self.metrics.put("grad_norm/total", deferred[0])
        self._check_spike(loss, t.step)

    def _check_spike(self, loss: float, step: int) -> None:
        window = self._window
        if len(window) >= max(5, self.spike_window // 5):
            ordered = sorted(window)
            median = ordered[len(ordered) // 2]  # the upper median: cheap, and fine for a threshold
            if median > 0 and loss > self.spike_factor * median and loss > ordered[-1]:
                message = (
                    f"loss spike: {loss:.4g} at step {step} is {loss / median:.1f}x the median "
                    f"{median:.4g} of the last {len(window)} steps"
                )
                spike = {"step": step, "loss": loss, "median": median, "message": message}
                self.spikes.append(spike)
                self.metrics.event(
                    "loss_spike", message, level="info", step=step, loss=loss, median=median
                )
        window.append(loss)

    def _stop(
        self,
        where: str,
        *,
        step: int | None = None,
        taken: bool = False,
        outputs_first: bool = False,
    ) -> NonFiniteError:
        """The error for a non-finite ``where`` at ``step`` (the step being taken by default).

        ``outputs_first``: blame a bad gradient on the first non-finite module output when the
        forward, re-run, has one (a host that checks gradients before it knows the loss)."""
        t = self.trainer
        terms = {k: float(v.detach().float().mean()) for k, v in t.loss_terms.items()}
        layer: str | None = None
        parameter: str | None = None
        detail = ""
        try:
            if where == "gradient" and outputs_first and t.batch is not None:
                layer, detail = self._first_bad_output()
            if where == "gradient" and layer is None:
                layer, parameter, detail = self._first_bad_gradient()
            elif where in ("loss", "output"):
                layer, detail = self._first_bad_output()
        except Exception as exc:  # locating the layer is a courtesy; the error is what matters
            detail = f"could not locate the layer: {type(exc).__name__}: {exc}"
        err = NonFiniteError(
            step=t.step + 1 if step is None else step,
            epoch=t.epoch + 1,
            where=where,
            loss_terms=terms,
            layer=layer,
            parameter=parameter,
            detail=detail,
            taken=taken,
        )
        self.metrics.event(
            "non_finite",
            str(err),
            level="error",
            step=err.step,
            where=where,
            layer=layer,
            loss_terms=terms,
        )
        every_step = self.check_gradients and self.gradient_check_interval == 1
        if t.dist.distributed and every_step and t.scaler is None:
            # Gradients are averaged over ranks, so every rank stops at this same
            # step (by its loss or by its gradient). Wait for each other before
            # raising: the launcher ends the other workers as soon as one exits,
            # and rank 0 must first write the records it holds.
            self.metrics.flush()
            import torch.distributed as dist

            dist.barrier()
        return err

    def state_dict(self) -> dict[str, Any]:
        return {"gradient_check_interval": self._chosen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        chosen = state.get("gradient_check_interval")
        if self.auto and chosen is not None:
            # The cadence this run chose before it was stopped: no second calibration.
            self._chosen = self.gradient_check_interval = int(chosen)
            self._calibration = None

    def _first_bad_gradient(self) -> tuple[str | None, str | None, str]:
        for name, p in self._params:  # module order
            if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                layer = name.rpartition(".")[0] or name
                return layer, name, f"gradient of {name}"
        return None, None, "every gradient is finite, but their global norm overflowed"

    def _first_bad_output(self) -> tuple[str | None, str]:
        """Runs the step's forward again with hooks to find where the first non-finite value appeared."""
        t = self.trainer
        if _has_non_finite(t.batch):
            return None, "the input batch has non-finite values"
        if t.dist.distributed:
            # Collective layers (SyncBatchNorm) would wait for ranks that are not probing.
            return None, "not probed under distributed training"
        model = t.module
        first: list[str] = []

        def make_hook(name: str) -> Any:
            def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
                # Forward hooks fire when a module finishes, so an inner module fires before its parent.
                if not first and _has_non_finite(out):
                    first.append(name)

            return hook

        handles = [m.register_forward_hook(make_hook(n)) for n, m in model.named_modules() if n]
        buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
        rng = rng_state()
        autocast = (
            torch.autocast(t.device.type, dtype=t.amp_dtype)
            if t.amp_dtype is not None
            else nullcontext()
        )
        try:
            with torch.no_grad(), autocast:
                t.task.losses(model, t.batch)
        finally:
            for h in handles:
                h.remove()
            # The probe changed BN running statistics and drew random numbers: put both back.
            with torch.no_grad():
                for n, b in model.named_buffers():
                    if n in buffers:
                        b.copy_(buffers[n])
            set_rng_state(rng)
        if first:
            return first[0], "its output, found by re-running the step's forward"
        log.debug("every module output was finite when the forward was re-run")
        return None, "every layer's output is finite: the loss function itself produced it"


def _has_non_finite(obj: Any) -> bool:
    if isinstance(obj, torch.Tensor):
        if not obj.is_floating_point():
            return False
        # A sum is finite only when every element is: one reduction and one read, where
        # isfinite().all() takes four kernels (it runs every unchecked step). A sum that
        # overflows from finite values is told apart by the exact check.
        return not math.isfinite(obj.detach().sum().item()) and not bool(torch.isfinite(obj).all())
    if isinstance(obj, dict):
        return any(_has_non_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_non_finite(v) for v in obj)
    return False
