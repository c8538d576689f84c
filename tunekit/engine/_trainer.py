"""The training loop: small, with hooks for everything optional."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from typing import Any, ClassVar, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader

from tunekit.core import (
    FORMAT,
    DistInfo,
    all_reduce_sum,
    any_rank,
    preserved_rng,
    rng_state,
    set_rng_state,
)

from ._hooks import HookBase
from ._metrics import WRITE_PRIORITY, MetricsStore
from ._optim import base_lr


class Task(Protocol):
    """What a kind of model (classifier, detector) brings to the loop."""

    #: The keys :meth:`evaluate` returns, known before anything is built (recipes are checked
    #: against them, so a misspelt metric is an error and not a run with no best checkpoint).
    metric_names: ClassVar[tuple[str, ...]]

    def to_device(self, batch: Any, device: torch.device) -> Any:
        """Moves a loader batch to ``device``."""

    def losses(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """Loss terms for one batch; the loop optimises their sum."""

    def evaluate(self, model: nn.Module, loader: Iterable[Any], dist: DistInfo) -> dict[str, float]:
        """Validation metrics (``"val/..."``), reduced over ranks."""


class Trainer:
    """Runs epochs of steps over ``train_loader`` and calls the hooks.

    The trainer owns the model, optimizer, scheduler, time (``epoch``,
    ``step``) and the run's :class:`MetricsStore` (``metrics``); hooks read
    them, put their values in the store and never own the trainer. ``epoch`` counts
    finished epochs and ``step`` finished optimizer steps, so a checkpoint
    taken after an epoch resumes at the start of the next one.

    With ``accumulate_steps`` k > 1, one step is k batches: each one's loss,
    divided by k, is backpropagated (under DDP without the gradient all-reduce
    but for the last), then the optimizer and the scheduler step once. Hooks
    see one ``before_step``/``after_backward``/``after_step`` per optimizer
    step; ``loss`` is then the mean of the k batches' losses and ``batch`` the
    last of them. An epoch's batches that do not fill a last step are skipped.

    With ``max_steps``, training ends after that many optimizer steps in all,
    mid-epoch if need be: the cut epoch counts as run, is evaluated, and its
    record's ``epoch`` is the fraction reached (``2.5``). The schedule is not
    told: it was built for ``epochs``, and a cut run sees its beginning.
    ``stop_reason`` then says ``max_steps``.

    Args:
        model: the network, already on its device (wrapped in DDP when distributed).
        optimizer, scheduler: the scheduler is stepped once per iteration.
        task: computes losses and validation metrics for this kind of model.
        hooks: run in ``priority`` order, then the order given.
        amp_dtype: autocast dtype, or None for full precision.
        scaler: a GradScaler for fp16, else None.
        max_steps: optimizer steps after which training ends (None: ``epochs`` alone).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: DataLoader[Any],
        task: Task,
        *,
        epochs: int,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        val_loader: DataLoader[Any] | None = None,
        hooks: Sequence[HookBase] = (),
        dist: DistInfo | None = None,
        seed: int = 0,
        grad_clip: float | None = None,
        amp_dtype: torch.dtype | None = None,
        scaler: torch.amp.GradScaler | None = None,
        max_steps_per_epoch: int | None = None,
        eval_every: int = 1,
        accumulate_steps: int = 1,
        max_steps: int | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.task = task
        self.dist = dist or DistInfo()
        self.device = self.dist.device
        self.epochs = epochs
        self.seed = seed
        self.grad_clip = grad_clip
        self.amp_dtype = amp_dtype
        self.scaler = scaler
        self.max_steps_per_epoch = max_steps_per_epoch
        self.eval_every = eval_every
        self.accumulate_steps = accumulate_steps
        self.max_steps = max_steps

        self.epoch = 0  # finished epochs
        self.step = 0  # finished optimizer steps
        self.iter_in_epoch = 0
        self.loss: torch.Tensor | None = None  # this step's total loss (on device)
        self.loss_terms: dict[str, torch.Tensor] = {}
        self.batch: Any = None
        # This step's batches so far (loss, terms), when accumulating.
        self._micro: list[tuple[torch.Tensor, dict[str, torch.Tensor]]] = []
        self.metrics = MetricsStore(is_main=self.dist.is_main)
        self.stop_reason: str | None = None
        self.hooks: list[HookBase] = []
        self.register_hooks(hooks)

    # -- public helpers ---------------------------------------------------

    @property
    def module(self) -> nn.Module:
        """The model without its DDP wrapper."""
        inner = getattr(self.model, "module", self.model)
        assert isinstance(inner, nn.Module)
        return inner

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch (each takes ``accumulate_steps`` batches)."""
        n = len(self.train_loader) // self.accumulate_steps
        return min(n, self.max_steps_per_epoch) if self.max_steps_per_epoch else n

    @property
    def batches_per_epoch(self) -> int:
        """Loader batches an epoch trains on."""
        return self.steps_per_epoch * self.accumulate_steps

    @property
    def images_per_step(self) -> int:
        """Images (items) one optimizer step trains on, over all ranks: the global batch
        times ``accumulate_steps``; ``step * images_per_step`` is the images seen."""
        per_rank = self.train_loader.batch_size or 1
        return per_rank * self.dist.world_size * self.accumulate_steps

    @property
    def out_of_steps(self) -> bool:
        """Whether ``max_steps`` optimizer steps have been taken."""
        return self.max_steps is not None and self.step >= self.max_steps

    @property
    def lr(self) -> float:
        """The scheduled LR (parameter groups with an LR multiplier get a multiple of it)."""
        return base_lr(self.optimizer)

    @property
    def history(self) -> list[dict[str, Any]]:
        """The epoch records so far (``metrics.history``)."""
        return self.metrics.history

    @property
    def last_eval(self) -> dict[str, float]:
        """The latest evaluation: ``val/...`` and side models' ``<model>/val/...``."""
        return self.metrics.last_eval

    def register_hooks(self, hooks: Iterable[HookBase]) -> None:
        for hook in hooks:
            hook.bind(self)
            self.hooks.append(hook)
        self.hooks.sort(key=lambda h: h.priority)  # stable: equal priorities keep their order

    def request_stop(self, reason: str) -> None:
        """Ends training after this epoch (all ranks agree at the epoch's end)."""
        self.stop_reason = self.stop_reason or reason

    # -- the loop ---------------------------------------------------------

    def train(self) -> None:
        """Runs from ``self.epoch`` to ``self.epochs``, until ``max_steps``, or until a stop
        is requested."""
        self.metrics.start(self.step, self.steps_per_epoch)
        try:
            self._call("before_train")
            while self.epoch < self.epochs and self.stop_reason is None and not self.out_of_steps:
                self._run_epoch()
            planned = self.epochs * self.steps_per_epoch
            if self.out_of_steps and self.stop_reason is None and self.step < planned:
                # A normal end, said so that a summary tells a cut run from a finished one.
                self.stop_reason = f"max_steps: {self.max_steps} optimizer steps taken"
        finally:
            self._call("after_train", self.metrics.end_train)

    def _run_epoch(self) -> None:
        self._seed_epoch()
        self.model.train()
        self._call("before_epoch")
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        term_sums: dict[str, Any] = {}
        n = 0
        per_step = self.accumulate_steps
        limit = self.steps_per_epoch * per_step
        for i, batch in enumerate(self.train_loader):
            if i >= limit or self.out_of_steps:
                break
            self.iter_in_epoch, part = divmod(i, per_step)
            if part == 0:
                self._begin_step()
            self.batch = self.task.to_device(batch, self.device)
            self._forward_backward(per_step, last=part == per_step - 1)
            if part < per_step - 1:
                continue
            self._finish_step()
            assert self.loss is not None
            loss_sum += self.loss.detach()
            if len(self.loss_terms) > 1:  # a detector's dict: each term's epoch mean is logged too
                for k, v in self.loss_terms.items():
                    term_sums[k] = term_sums.get(k, 0.0) + v.detach().double()
            n += 1
        elapsed = time.perf_counter() - started
        terms = sorted(term_sums)  # every rank has the same terms, in the same order
        stats = torch.stack(
            [loss_sum, torch.tensor(float(n), device=self.device, dtype=torch.float64)]
            + [term_sums[k] for k in terms]
        )
        all_reduce_sum(stats)
        self.epoch += 1
        # A cut epoch (max_steps) is recorded at the fraction reached; a whole one at its count.
        cut = n < self.steps_per_epoch
        record = {
            "epoch": self.metrics.epoch_at(self.step) if cut else float(self.epoch),
            "step": float(self.step),
            "images": float(self.step * self.images_per_step),
            "train/loss": float(stats[0] / stats[1]) if stats[1] > 0 else math.nan,
            "lr": self.lr,
            "time/epoch_s": elapsed,
        }
        for i, k in enumerate(terms):
            record[f"train/{k}"] = float(stats[2 + i] / stats[1]) if stats[1] > 0 else math.nan
        due = self.epoch % self.eval_every == 0 or self.epoch == self.epochs or self.out_of_steps
        evaluation = self.evaluate() if self.val_loader is not None and due else None
        self.metrics.begin_epoch_record(record, evaluation)
        self._call("after_epoch", self.metrics.end_epoch)
        if any_rank(self.stop_reason is not None, self.device) and self.stop_reason is None:
            self.stop_reason = "stopped by another rank"

    def run_step(self) -> None:
        """One optimizer step on ``self.batch`` alone."""
        self._begin_step()
        self._forward_backward(1, last=True)
        self._finish_step()

    def _begin_step(self) -> None:
        self.metrics.begin_step(self.step + 1)
        self._call("before_step")
        self.optimizer.zero_grad(set_to_none=True)
        self._micro = []

    def _forward_backward(self, k: int, *, last: bool) -> None:
        """Forward and backward of ``self.batch`` as one of ``k`` batches of this step."""
        autocast = (
            torch.autocast(self.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else nullcontext()
        )
        # DDP all-reduces gradients in backward; the accumulation passes skip it and the
        # last pass reduces the sum. The forward must be inside no_sync too.
        no_sync = getattr(self.model, "no_sync", None)
        sync = nullcontext() if last or no_sync is None else no_sync()
        with sync:
            with autocast:
                terms = self.task.losses(self.model, self.batch)
            loss = sum(terms.values()) if len(terms) > 1 else next(iter(terms.values()))
            assert isinstance(loss, torch.Tensor)
            # Each batch's loss is a mean over its images: k of them / k is the mean over all.
            scaled = loss / k if k > 1 else loss
            if self.scaler is not None:
                self.scaler.scale(scaled).backward()
            else:
                scaled.backward()
        if k == 1:
            self.loss, self.loss_terms = loss, terms
        else:
            self._micro.append((loss.detach(), {n: t.detach() for n, t in terms.items()}))

    def _finish_step(self) -> None:
        if self._micro:  # accumulated: the step's loss is the mean over its batches
            self.loss = torch.stack([m[0] for m in self._micro]).mean(dim=0)
            self.loss_terms = {
                n: torch.stack([m[1][n] for m in self._micro]).mean(dim=0)
                for n in self._micro[0][1]
            }
            self._micro = []
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        self._call("after_backward")
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.step += 1
        self._call("after_step", self._close_step)

    def _close_step(self) -> None:
        self.metrics.end_step(self.step, lambda: self.lr)

    @torch.no_grad()
    def evaluate(self, model: nn.Module | None = None) -> dict[str, float]:
        """Validation metrics of the current model, or of another one on the same data (an
        EMA or SWA average, a snapshot ensemble, TTA views); every rank gets the same numbers.

        Another model's evaluation leaves the run's random stream where it was: starting a
        DataLoader draws its base seed from the global RNG.
        """
        assert self.val_loader is not None
        side = model is not None
        model = model if model is not None else self.module
        was_training = model.training
        model.eval()
        try:
            with preserved_rng(self.val_loader) if side else nullcontext():
                return self.task.evaluate(model, self.val_loader, self.dist)
        finally:
            model.train(was_training)

    def _seed_epoch(self) -> None:
        # The data order and the loader workers' seeds depend on (seed, epoch)
        # alone, so a run resumed at an epoch boundary sees the same batches.
        set_epoch = getattr(getattr(self.train_loader, "sampler", None), "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.epoch)
        generator = getattr(self.train_loader, "generator", None)
        if isinstance(generator, torch.Generator):
            generator.manual_seed(self.seed * 100_003 + self.epoch)

    def _call(self, event: str, close: Callable[[], None] | None = None) -> None:
        """Calls ``event`` on every hook; ``close`` (the store's end of a step, an epoch,
        the run) runs between the hooks below ``WRITE_PRIORITY`` and those from it on."""
        for hook in self.hooks:
            if close is not None and hook.priority >= WRITE_PRIORITY:
                close()
                close = None
            getattr(hook, event)()
        if close is not None:
            close()

    # -- state ------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: model, optimizer, schedule, RNGs, hooks."""
        return {
            "format": FORMAT,
            "epoch": self.epoch,
            "step": self.step,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng_state(),
            "history": self.history,
            "hooks": {h.name: h.state_dict() for h in self.hooks},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.metrics.load_history(state.get("history", []))
        hook_states = state.get("hooks", {})
        for hook in self.hooks:
            if hook.name in hook_states:
                hook.load_state_dict(hook_states[hook.name])
        # Last: building the model and loaders consumed random numbers.
        set_rng_state(state["rng"])
