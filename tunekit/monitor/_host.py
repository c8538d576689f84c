"""A trainer-like host that drives tunekit's hooks and metrics store from someone else's loop."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from tunekit.core import DistInfo
from tunekit.engine import WRITE_PRIORITY, HookBase, MetricsStore, Record, base_lr

if TYPE_CHECKING:
    from tunekit.engine import Trainer


class Replay:
    """The step's forward, called again: the guards re-run it (with hooks) to find the first
    module whose output went non-finite. It holds the last training call's arguments."""

    def __init__(self) -> None:
        self.args: tuple[Any, ...] = ()
        self.kwargs: dict[str, Any] = {}

    def losses(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        # The loss is the user's; re-running the model is all the guards need.
        model(*self.args, **self.kwargs)
        return {}


class LoopHost:
    """What a :class:`~tunekit.engine.Trainer` is to its hooks, for a loop tunekit does not run.

    The loop tells it where it is (:meth:`before_step`, :meth:`after_backward`,
    :meth:`after_step`, :meth:`end_epoch`, :meth:`close`) and the host calls the
    hooks' lifecycle methods in the trainer's order, closing the metrics store's
    records at :data:`~tunekit.engine.WRITE_PRIORITY` as the trainer does. Hooks
    read the attributes they read on a trainer (``module``, ``optimizer``,
    ``step``, ``epoch``, ``loss``, ``batch``, ``dist``, ...), so the diagnostics
    are the trainer's own code.

    Args:
        model: the model being trained (under DDP, the wrapper or the module).
        optimizer: the optimizer that steps it.
        hooks: the hooks to drive (diagnostics, writers, the live view).
        dist: this process's place in the job (rank 0 writes).
        steps_per_epoch: optimizer steps per epoch when known (fractional epochs in step
            records); otherwise learnt from the first epoch.
        epochs: epochs planned, for the progress bar (1 when unknown).
    """

    # Read by the hooks as on a trainer: this loop has no scaler, autocast or accumulation.
    scaler: Any = None
    amp_dtype: torch.dtype | None = None
    accumulate_steps = 1
    scheduler: Any = None
    # The loop hands over its loss after optimizer.step(): the guards check the model's
    # output before the step instead.
    loss_after_step = True

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        hooks: Sequence[HookBase],
        *,
        dist: DistInfo | None = None,
        steps_per_epoch: int | None = None,
        epochs: int | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.dist = dist or DistInfo(device=_device_of(model))
        self.device = self.dist.device
        self.epoch = 0  # finished epochs
        self.step = 0  # finished optimizer steps
        self.epochs = epochs or 1
        self.loss: torch.Tensor | None = None
        #: the step's loss as a number (the mean of a loss that is not a scalar), read once
        self.loss_value: float | None = None
        self.loss_terms: dict[str, torch.Tensor] = {}
        self.batch: Any = None
        self.task = Replay()
        self.metrics = MetricsStore(is_main=self.dist.is_main)
        self.known_steps_per_epoch = steps_per_epoch
        self.stop_reason: str | None = None
        self.hooks = sorted(hooks, key=lambda h: h.priority)
        self._in_step = False
        self._epoch_started = time.perf_counter()
        self._epoch_first_step = 0
        self._loss_sum = 0.0
        self._loss_n = 0

    # -- what hooks read on a trainer -------------------------------------

    @property
    def module(self) -> nn.Module:
        inner = getattr(self.model, "module", self.model)
        assert isinstance(inner, nn.Module)
        return inner

    @property
    def steps_per_epoch(self) -> int:
        return self.known_steps_per_epoch or max(self.step - self._epoch_first_step, 1)

    @property
    def lr(self) -> float:
        """The scheduled LR, as the trainer records it."""
        return base_lr(self.optimizer)

    @property
    def history(self) -> list[Record]:
        return self.metrics.history

    def request_stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason

    # -- the loop's calls ---------------------------------------------------

    def start(self) -> None:
        for hook in self.hooks:
            # The hooks are typed for the trainer; this host has every attribute they read.
            hook.bind(cast("Trainer", self))
        self.metrics.start(self.step, self.known_steps_per_epoch or 1)
        self._call("before_train")

    @property
    def in_step(self) -> bool:
        """Whether :meth:`before_step` has run for the step being taken."""
        return self._in_step

    def before_step(self) -> None:
        """The next step starts (before its forward)."""
        self._in_step = True
        self.metrics.begin_step(self.step + 1)
        self._call("before_step")

    def after_backward(self) -> None:
        """Gradients exist and no weight has moved yet; the loss is not known."""
        if not self._in_step:
            self.before_step()
        self.loss, self.loss_terms = None, {}
        self._call("after_backward")

    def after_step(self, loss: torch.Tensor | float) -> None:
        """The optimizer stepped; ``loss`` is the step's loss."""
        value = torch.as_tensor(loss).detach()
        self.loss, self.loss_terms = value, {"loss": value}
        self.step += 1
        self._in_step = False
        # One number from a scalar loss without a mean over it (this runs every step).
        self.loss_value = float(value.item() if value.numel() == 1 else value.float().mean())
        self._loss_sum += self.loss_value
        self._loss_n += 1
        self._call("after_step", lambda: self.metrics.end_step(self.step, lambda: self.lr))

    def end_epoch(self, val_metrics: dict[str, float] | None = None) -> Record:
        """An epoch ended; ``val_metrics`` are its validation numbers (``val/`` is added when
        a name lacks it). Returns the epoch record."""
        if self.known_steps_per_epoch is None and self.epoch == 0:
            # Learnt from the first epoch: every epoch has the same number of steps.
            self.known_steps_per_epoch = max(self.step, 1)
            self.metrics.steps_per_epoch = self.known_steps_per_epoch
        self.epoch += 1
        record: Record = {
            "epoch": float(self.epoch),
            "step": float(self.step),
            "train/loss": self._loss_sum / self._loss_n if self._loss_n else math.nan,
            "lr": self.lr,
            "time/epoch_s": time.perf_counter() - self._epoch_started,
        }
        evaluation = None
        if val_metrics:
            evaluation = {
                (k if k.startswith("val/") else f"val/{k}"): float(v)
                for k, v in val_metrics.items()
            }
        self.metrics.begin_epoch_record(record, evaluation)
        self._call("after_epoch", self.metrics.end_epoch)
        self._epoch_started = time.perf_counter()
        self._epoch_first_step = self.step
        self._loss_sum, self._loss_n = 0.0, 0
        return self.metrics.epoch

    def close(self) -> None:
        self._in_step = False
        self._call("after_train", self.metrics.end_train)

    def _call(self, event: str, close: Callable[[], None] | None = None) -> None:
        # The trainer's order: hooks below WRITE_PRIORITY, the store closes the record, the rest.
        for hook in self.hooks:
            if close is not None and hook.priority >= WRITE_PRIORITY:
                close()
                close = None
            getattr(hook, event)()
        if close is not None:
            close()


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
