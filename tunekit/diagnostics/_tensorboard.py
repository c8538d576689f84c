"""TensorBoard event files: every scalar of the record stream, plus weight and update histograms."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ._base import DiagnosticHook, never_fails
from ._ratios import UpdateRatioMonitor
from ._records import Record, StepRecorder

_NOT_SCALARS = {"kind", "step", "epoch", "event", "level", "message"}


class TensorBoardWriter(DiagnosticHook):
    """Writes ``RUN_DIR/tb`` for ``tensorboard --logdir RUN_DIR/tb`` (rank 0 only).

    Scalars are those of the run's record stream (step records, epoch records
    and events as text), against the optimizer step. Every
    ``histogram_interval`` steps it adds histograms of each trainable weight
    (``weights/<parameter>``) and, when an :class:`UpdateRatioMonitor`
    measured that step, of its update (``updates/<parameter>``). A resumed run
    drops events past its checkpoint (``purge_step``), as metrics.jsonl does.

    Args:
        log_dir: the event files' directory.
        histogram_interval: steps between histograms; None for none.
    """

    priority = 86

    def __init__(
        self, log_dir: str | os.PathLike[str], histogram_interval: int | None = 200
    ) -> None:
        self.log_dir = Path(log_dir)
        self.histogram_interval = histogram_interval
        self._writer: Any = None
        self._ratios: UpdateRatioMonitor | None = None

    @never_fails
    def before_train(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        t = self.trainer
        if not t.dist.is_main:
            return
        self._writer = SummaryWriter(str(self.log_dir), purge_step=t.step if t.step > 0 else None)
        rec = t.get_hook(StepRecorder)
        if isinstance(rec, StepRecorder):
            rec.subscribe(self.write_record)
        ratios = t.get_hook(UpdateRatioMonitor)
        self._ratios = ratios if isinstance(ratios, UpdateRatioMonitor) else None

    def write_record(self, rec: Record) -> None:
        """Writes one record's scalars (an event as text under ``events``)."""
        if self._writer is None or self.disabled:
            return
        step = int(rec.get("step", 0))
        if rec.get("kind") == "event":
            self._writer.add_text(
                f"events/{rec.get('event', 'event')}", str(rec.get("message", "")), step
            )
            return
        for key, value in rec.items():
            if (
                key in _NOT_SCALARS
                or not isinstance(value, (int, float))
                or isinstance(value, bool)
            ):
                continue
            # Epoch records' training mean and LR would collide with the step records' own keys.
            tag = (
                f"epoch/{key}" if rec.get("kind") == "epoch" and not key.startswith("val/") else key
            )
            self._writer.add_scalar(tag, float(value), step)

    @never_fails
    def after_step(self) -> None:
        t = self.trainer
        if self._writer is None or not self.histogram_interval or t.step % self.histogram_interval:
            return
        for name, p in t.module.named_parameters():
            if p.requires_grad:
                self._writer.add_histogram(f"weights/{name}", p.detach().float().cpu(), t.step)
        if self._ratios is not None and self._ratios.updates_step == t.step:
            for name, delta in self._ratios.updates.items():
                self._writer.add_histogram(f"updates/{name}", delta.float().cpu(), t.step)

    @never_fails
    def after_epoch(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def after_train(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._writer = None
