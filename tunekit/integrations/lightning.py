"""A Lightning callback that records what ``tunekit train`` records, through ``tunekit.watch``'s host.

    trainer = lightning.Trainer(callbacks=[TunekitCallback(out="runs/mine")])

Under a DDP strategy every rank measures what the guards need (a non-finite
gradient stops every rank at the same step) and rank 0 alone writes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch.utils.hooks import RemovableHandle

from tunekit.core import DistInfo
from tunekit.diagnostics import NonFiniteError
from tunekit.monitor import (
    LoopHost,
    check_watched,
    diagnostics_config,
    watch_hooks,
    write_summary,
)


class TunekitCallback(pl.Callback):
    """Per-layer update/weight ratios, gradient and weight norms, activation statistics, loss
    spikes, LR, non-finite guards, ``metrics.jsonl``, TensorBoard and ``summary.json`` for a
    ``LightningModule`` trained by ``lightning.Trainer``.

    The step's loss is what ``training_step`` returns (the ``loss`` of its dict).
    Epoch records take the validation values logged under ``val/<name>`` or
    ``val_<name>`` (both written ``val/<name>``). A non-finite gradient raises
    :class:`~tunekit.diagnostics.NonFiniteError` before the optimizer moves a weight,
    naming the step and the first layer whose output (else gradient) is non-finite.

    Args:
        out: the run directory (``tunekit report``/``diagnose`` read it).
        on_non_finite: ``"raise"`` or ``"warn"`` (record it and go on).
        progress: the live view; off by default (Lightning draws its own bar).
        **diagnostics: fields of a recipe's ``diagnostics`` section (``interval=10``, ...).
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        *,
        on_non_finite: Literal["raise", "warn"] = "raise",
        progress: bool = False,
        **diagnostics: Any,
    ) -> None:
        self.out = Path(out)
        self.on_non_finite = on_non_finite
        self.progress = progress
        self.cfg = diagnostics_config(diagnostics)
        self.host: LoopHost | None = None
        self.errors: list[NonFiniteError] = []
        self._handle: RemovableHandle | None = None
        self._stepped = False
        self._started = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizer = trainer.optimizers[0]
        check_watched(pl_module, optimizer)
        dist = DistInfo(
            rank=trainer.global_rank,
            world_size=trainer.world_size,
            local_rank=trainer.local_rank,
            device=pl_module.device,
        )
        if dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        steps = trainer.num_training_batches
        per_epoch = int(steps) // trainer.accumulate_grad_batches if steps != float("inf") else None
        self.host = LoopHost(
            pl_module,
            optimizer,
            watch_hooks(self.out, self.cfg, progress=self.progress, dist=dist),
            dist=dist,
            steps_per_epoch=per_epoch or None,
            epochs=trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None,
        )
        self._handle = pl_module.register_forward_pre_hook(self._before_forward, with_kwargs=True)
        self._started = time.perf_counter()
        self.host.start()

    def _before_forward(self, module: torch.nn.Module, args: Any, kwargs: Any) -> None:
        # Kept for the guards: they re-run this forward to find the first non-finite output.
        if self.host is not None and module.training and torch.is_grad_enabled():
            self.host.task.args, self.host.task.kwargs = tuple(args), dict(kwargs)
            self.host.batch = tuple(args)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.host is not None and not self.host.in_step:
            self.host.before_step()

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        if self.host is not None:
            self._stepped = True
            self._guarded(self.host.after_backward)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self.host is None or not self._stepped:
            return  # an accumulating batch: the optimizer has not stepped
        self._stepped = False
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            loss = torch.tensor(float("nan"))
        self._guarded(self.host.after_step, loss)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.host is None:
            return
        val: dict[str, float] = {}
        for key, value in trainer.callback_metrics.items():
            for prefix in ("val/", "val_"):
                if key.startswith(prefix):
                    val[f"val/{key[len(prefix) :]}"] = float(value)
        self.host.end_epoch(val)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self.host is not None and isinstance(exception, NonFiniteError):
            self.host.stop_reason = str(exception)
        self._close()

    def _guarded(self, call: Any, *args: Any) -> None:
        assert self.host is not None
        try:
            call(*args)
        except NonFiniteError as err:
            self.errors.append(err)
            self.host.metrics.flush()
            if self.on_non_finite == "raise":
                raise

    def _close(self) -> None:
        host, self.host = self.host, None
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if host is None:
            return
        host.close()
        if host.dist.is_main:
            write_summary(
                host, self.out, "tunekit.integrations.lightning", self._started, self.errors
            )
