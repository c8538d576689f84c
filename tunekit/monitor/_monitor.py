"""``tunekit.watch``: the trainer's diagnostics, records and live view on your own training loop."""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import torch
from torch import nn

from tunekit.config import DiagnosticsConfig, validate
from tunekit.core import DistInfo
from tunekit.diagnostics import NonFiniteError, diagnostic_hooks
from tunekit.engine import HookBase, MetricsWriter, ProgressHook, Record
from tunekit.errors import TunekitError

from ._host import LoopHost

OnNonFinite = Literal["raise", "warn"]


class Monitor:
    """Watches a training loop you wrote: build it with :func:`watch`.

    Call :meth:`step` with the loss after each ``optimizer.step()``, :meth:`epoch` at
    the end of an epoch and :meth:`close` at the end (or use it as a context manager).
    The measurements before the optimizer moves the weights (weights copied for the
    update ratio, gradients checked) run in a pre-hook of ``optimizer.step()``; the
    activation sample registers its forward hooks when the model's training forward
    starts. The directory gets what a ``tunekit train`` run writes for its diagnostics
    (``metrics.jsonl``, ``tb/``) and a ``summary.json``, so ``tunekit report`` and
    ``tunekit diagnose`` read it as a run.
    """

    def __init__(
        self,
        host: LoopHost,
        out: Path,
        *,
        on_non_finite: OnNonFinite = "raise",
    ) -> None:
        self.host = host
        self.out = out
        self.on_non_finite = on_non_finite
        self.errors: list[NonFiniteError] = []
        self._stepped = False
        self._closed = False
        self._started = time.perf_counter()
        opt, model = host.optimizer, host.model
        self._handles = [
            opt.register_step_pre_hook(self._before_optimizer_step),
            opt.register_step_post_hook(self._after_optimizer_step),
            model.register_forward_pre_hook(self._before_forward, with_kwargs=True),
        ]
        host.start()

    # -- the loop's calls ---------------------------------------------------

    def step(self, loss: torch.Tensor | float) -> None:
        """Records the step ``optimizer.step()`` just took, whose loss was ``loss``.

        Raises:
            TunekitError: ``optimizer.step()`` has not run since the last call.
            NonFiniteError: ``loss`` is not finite (with ``on_non_finite="raise"``).
        """
        if not self._stepped:
            raise TunekitError(
                f"monitor.step() at step {self.host.step + 1}, but optimizer.step() has not run "
                "since the last one (no parameter changed); call monitor.step(loss) right after "
                "optimizer.step()",
                field="step",
            )
        self._stepped = False
        self._guarded(self.host.after_step, loss)

    def epoch(self, val_metrics: dict[str, float] | None = None) -> Record:
        """Ends an epoch: its record (train loss mean, LR, time) with ``val_metrics``
        (``{"top1": 0.9}`` or ``{"val/top1": 0.9}``; ``val/`` is added where missing)."""
        return self.host.end_epoch(val_metrics)

    def close(self) -> None:
        """Flushes the records, closes TensorBoard and the live view, writes ``summary.json``."""
        if self._closed:
            return
        self._closed = True
        for handle in self._handles:
            handle.remove()
        self.host.close()
        if self.host.dist.is_main:
            self._write_summary()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, NonFiniteError):
            self.host.stop_reason = str(exc)
        self.close()

    # -- what is read --------------------------------------------------------

    @property
    def metrics(self) -> Any:
        """The metrics store (``latest``, ``events``, ``history``), as ``trainer.metrics``."""
        return self.host.metrics

    @property
    def hooks(self) -> list[HookBase]:
        return self.host.hooks

    # -- torch hooks ---------------------------------------------------------

    def _before_forward(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return  # an evaluation forward is not part of a step
        host = self.host
        host.task.args, host.task.kwargs = tuple(args), dict(kwargs)
        host.batch = tuple(args)
        if not host.in_step:
            host.before_step()

    def _before_optimizer_step(self, *_: Any) -> None:
        self._guarded(self.host.after_backward)

    def _after_optimizer_step(self, *_: Any) -> None:
        self._stepped = True

    def _guarded(self, call: Any, *args: Any) -> None:
        try:
            call(*args)
        except NonFiniteError as err:
            self.errors.append(err)
            self.host.metrics.flush()  # the event reaches metrics.jsonl before anything stops
            if self.on_non_finite == "raise":
                self.host.stop_reason = str(err)
                raise
            if len(self.errors) == 1:
                warnings.warn(str(err), RuntimeWarning, stacklevel=3)

    def _write_summary(self) -> None:
        write_summary(self.host, self.out, "tunekit.watch", self._started, self.errors)


def write_summary(
    host: LoopHost, out: Path, source: str, started: float, errors: list[NonFiniteError]
) -> None:
    """``out/summary.json``: steps and epochs run, why it stopped, the last epoch record."""
    summary = {
        "source": source,
        "run_dir": str(out),
        "epochs_run": host.epoch,
        "steps": host.step,
        "world_size": host.dist.world_size,
        "stop_reason": host.stop_reason,
        "wall_time_s": time.perf_counter() - started,
        "final": host.history[-1] if host.history else {},
        "non_finite": [str(e) for e in errors],
    }
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, allow_nan=True))
    tmp.replace(out / "summary.json")


def check_watched(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Raises a one-line error when ``optimizer`` steps none of ``model``'s trainable parameters."""
    if not isinstance(model, nn.Module):
        raise TunekitError(
            f"value {type(model).__name__} is not allowed: give the torch.nn.Module you train",
            field="model",
        )
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TunekitError(
            f"value {type(optimizer).__name__} is not allowed: give the torch.optim.Optimizer "
            "that steps the model",
            field="optimizer",
        )
    stepped = {id(p) for g in optimizer.param_groups for p in g["params"]}
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not any(id(p) in stepped for p in trainable):
        raise TunekitError(
            f"none of the model's {len(trainable)} trainable parameters is in the optimizer; "
            "build it from this model's parameters (e.g. torch.optim.SGD(model.parameters(), ...))",
            field="optimizer",
        )


def watch_hooks(
    out: Path, cfg: DiagnosticsConfig, *, progress: bool | None, dist: DistInfo
) -> list[HookBase]:
    """The hooks a watched loop gets: the recipe's diagnostics, metrics.jsonl and the live view."""
    hooks: list[HookBase] = [MetricsWriter(out / "metrics.jsonl"), *diagnostic_hooks(cfg, out)]
    show = sys.stderr.isatty() if progress is None else progress
    if show and dist.is_main:
        low, high = cfg.ratio_bounds
        hooks.append(ProgressHook(live=cfg.enabled and cfg.live, bounds=(low, high)))
    return hooks


def diagnostics_config(options: dict[str, Any]) -> DiagnosticsConfig:
    """A recipe's ``diagnostics`` section from keyword arguments (one-line errors)."""
    return validate(DiagnosticsConfig, options, file="tunekit.watch")


def watch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    out: str | Path,
    *,
    steps_per_epoch: int | None = None,
    epochs: int | None = None,
    on_non_finite: OnNonFinite = "raise",
    progress: bool | None = None,
    **diagnostics: Any,
) -> Monitor:
    """Watches your own training loop with the diagnostics of ``tunekit train``.

    Example::

        monitor = tunekit.watch(model, optimizer, out="runs/mine")
        for x, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            monitor.step(loss)
        monitor.epoch({"top1": accuracy})
        monitor.close()

    Args:
        model: the model being trained.
        optimizer: the optimizer that steps it (at least one of its parameters).
        out: the run directory (``metrics.jsonl``, ``tb/``, ``summary.json``).
        steps_per_epoch: optimizer steps per epoch (``len(loader)``) for fractional
            epochs in step records and the progress bar; learnt from the first epoch when omitted.
        epochs: epochs planned (the progress bar's length).
        on_non_finite: ``"raise"`` a :class:`~tunekit.diagnostics.NonFiniteError` (before
            the weights move, for a gradient) or ``"warn"`` once and record every one.
        progress: the live view; by default when stderr is a terminal.
        **diagnostics: fields of a recipe's ``diagnostics`` section (``interval=10``,
            ``activations="off"``, ``tensorboard=False``, ...), same defaults.
    """
    check_watched(model, optimizer)
    if on_non_finite not in ("raise", "warn"):
        raise TunekitError(
            f"value {on_non_finite!r} is not allowed: use 'raise' or 'warn'", field="on_non_finite"
        )
    cfg = diagnostics_config(diagnostics)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    dist = DistInfo(device=_device(model))
    hooks = watch_hooks(root, cfg, progress=progress, dist=dist)
    host = LoopHost(
        model, optimizer, hooks, dist=dist, steps_per_epoch=steps_per_epoch, epochs=epochs
    )
    return Monitor(host, root, on_non_finite=on_non_finite)


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
