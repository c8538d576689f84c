"""Guards: stop a step whose loss or gradient is not finite; record loss spikes."""

from __future__ import annotations

import math
from collections import deque
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from tunekit.core import rng_state, set_rng_state

from ._base import DiagnosticHook, log, never_fails
from ._errors import NonFiniteError


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

    A host that learns the loss only after the optimizer step (``tunekit.watch``
    on a user's own loop, the Lightning callback) calls ``after_backward`` with
    no loss: the gradients are checked then, before any weight moves (a bad one
    is blamed on the first module whose output is non-finite when the step's
    forward is re-run, else on the first bad gradient), and the loss at
    ``after_step``, where a non-finite loss raises with ``taken=True``.

    Args:
        check_gradients: check the gradient norm too (the loss is always checked).
        gradient_check_interval: steps between gradient checks.
        spike_factor: how many times the window's median a spike must reach.
        spike_window: losses in the moving window.
    """

    priority = 10  # first after backward: nothing else should read a bad step

    def __init__(
        self,
        check_gradients: bool = True,
        spike_factor: float = 3.0,
        spike_window: int = 50,
        gradient_check_interval: int = 1,
    ) -> None:
        self.check_gradients = check_gradients
        self.gradient_check_interval = gradient_check_interval
        self.spike_factor = spike_factor
        self.spike_window = spike_window
        self.spikes: list[dict[str, Any]] = []
        self._window: deque[float] = deque(maxlen=spike_window)
        self._params: list[tuple[str, nn.Parameter]] = []
        self._uniform = True
        # The gradient check's result, when the loss comes at after_step (see the class doc).
        self._deferred: tuple[float | None] | None = None

    @never_fails
    def before_train(self) -> None:
        self._watch_trainable()

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
            values = self._to_host([loss_t, *torch._foreach_norm(grads)])
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
        if self._gradients_due() and (grads := self._grads()):
            grad_norm = math.hypot(*self._to_host(list(torch._foreach_norm(grads))))
            if not math.isfinite(grad_norm):
                raise self._stop("gradient", outputs_first=True)
        self._deferred = (grad_norm,)

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
        loss = float(t.loss.detach().float().reshape(()))
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
            elif where == "loss":
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
        return obj.is_floating_point() and not bool(torch.isfinite(obj).all())
    if isinstance(obj, dict):
        return any(_has_non_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_non_finite(v) for v in obj)
    return False
