"""TensorBoard event files: the scalars of the record stream, plus weight and update histograms."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from tensorboard.compat.proto.summary_pb2 import Summary

from tunekit.engine import Record

from ._base import DiagnosticHook, never_fails

_NOT_SCALARS = {"kind", "step", "epoch", "event", "level", "message"}
# Per-parameter ratios and weight norms stay in metrics.jsonl: TensorBoard gets
# the per-layer ratios and gradient norms (and the weight histograms).
_JSONL_ONLY = ("param_update_ratio/", "weight_norm/")


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C that frames each record of an event file (TFRecord format),
    computed in C by google-crc32c."""
    import google_crc32c

    x = google_crc32c.value(data)
    return (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def fast_record_checksums() -> None:
    """Has TensorBoard's record writer checksum with :func:`masked_crc32c`.

    Without TensorFlow, TensorBoard computes each record's CRC-32C in pure Python, a
    loop per byte: about 100 us for one step's scalars on the writer thread, more than
    the rest of the per-step diagnostics together. The checksum is the same (a test
    compares them); the event files are byte for byte what TensorBoard would write.
    """
    from tensorboard.summary.writer import record_writer

    try:
        import google_crc32c
    except ImportError:  # installed with tunekit; a bare environment keeps the slow one
        return
    if google_crc32c.implementation == "c":
        record_writer.masked_crc32c = masked_crc32c


class TensorBoardWriter(DiagnosticHook):
    """Writes ``RUN_DIR/tb`` for ``tensorboard --logdir RUN_DIR/tb`` (rank 0 only).

    Scalars are those of the metrics store's records (step records, epoch
    records and events as text), against the optimizer step; per-parameter
    ratios and weight norms are left to metrics.jsonl. Every
    ``histogram_interval`` steps it adds histograms of each trainable weight
    matrix or kernel (tensors of 2 or more dimensions: ``weights/<parameter>``)
    and of the store's histograms of that step (``updates/<parameter>``, from
    an :class:`UpdateRatioMonitor`). A resumed run drops events past its checkpoint
    (``purge_step``), as metrics.jsonl does.

    Scalars are handed to TensorBoard's writer thread in batches of
    ``batch`` records (and at every epoch's end): one hand-over per step
    costs far more than the writing, since it wakes that thread every time.

    Args:
        log_dir: the event files' directory.
        histogram_interval: steps between histograms; None for none.
        batch: records per hand-over to the writer thread.
    """

    priority = 86

    def __init__(
        self, log_dir: str | os.PathLike[str], histogram_interval: int | None = 500, batch: int = 50
    ) -> None:
        self.log_dir = Path(log_dir)
        self.histogram_interval = histogram_interval
        self.batch = batch
        self.bins = 64
        self._pending: list[tuple[Summary, int]] = []
        self._writer: Any = None

    @never_fails
    def before_train(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        t = self.trainer
        if not t.dist.is_main:
            return
        fast_record_checksums()
        # A queue longer than a batch: with TensorBoard's default of 10, handing over a
        # batch would wait for the writer thread to write most of it.
        self._writer = SummaryWriter(
            str(self.log_dir),
            purge_step=t.step if t.step > 0 else None,
            max_queue=2 * self.batch + 16,
        )
        self.metrics.subscribe(self.write_record)

    def write_record(self, rec: Record) -> None:
        """Writes one record's scalars (an event as text under ``events/<name>``)."""
        if self._writer is None or self.disabled:
            return
        step = int(rec.get("step", 0))
        if rec.get("kind") == "event":
            self._writer.add_text(
                f"events/{rec.get('event', 'event')}", str(rec.get("message", "")), step
            )
            return
        epoch = rec.get("kind") == "epoch"
        values = []
        for key, value in rec.items():
            if key in _NOT_SCALARS or key.startswith(_JSONL_ONLY):
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            # Epoch records' training mean and LR would collide with the step records' own keys.
            tag = f"epoch/{key}" if epoch and not key.startswith("val/") else key
            values.append(Summary.Value(tag=tag, simple_value=float(value)))
        if values:
            # One event per record, holding all its scalars: add_scalar makes an
            # event per value and hands each to the writer thread, and a
            # measured step's record carries dozens of values.
            self._pending.append((Summary(value=values), step))
            if len(self._pending) >= self.batch:
                self.flush()

    def flush(self) -> None:
        """Hands the batched scalars to the writer thread."""
        pending, self._pending = self._pending, []
        if self._writer is None:
            return
        for summary, step in pending:
            self._writer.file_writer.add_summary(summary, step)

    @never_fails
    def after_step(self) -> None:
        t = self.trainer
        if self._writer is None or not self.histogram_interval or t.step % self.histogram_interval:
            return
        # Matrices and kernels only: a bias or a norm scale is too small for a useful histogram.
        for name, p in t.module.named_parameters():
            if p.requires_grad and p.dim() >= 2:
                self._histogram(f"weights/{name}", p.detach(), t.step)
        for tag, tensor in self.metrics.histograms.items():
            if tensor.dim() >= 2:
                self._histogram(tag, tensor, t.step)

    def _histogram(self, tag: str, x: Any, step: int) -> None:
        # Binned on the tensor's device with torch.histc and written with
        # add_histogram_raw: add_histogram copies the tensor to numpy and bins
        # it there, which costs more than the rest of the diagnostics together.
        x = x.detach().float()
        finite = x[torch.isfinite(x)]
        if finite.numel() == 0:
            return
        lo, hi = finite.min(), finite.max()
        counts = torch.histc(finite, bins=self.bins, min=float(lo), max=float(hi))
        stats = torch.stack([lo, hi, finite.sum(), finite.pow(2).sum()]).tolist()
        low, high = stats[0], stats[1]
        if high <= low:
            high = low + 1e-12
        limits = torch.linspace(low, high, self.bins + 1)[1:].tolist()
        self._writer.add_histogram_raw(
            tag,
            min=stats[0],
            max=stats[1],
            num=int(finite.numel()),
            sum=stats[2],
            sum_squares=stats[3],
            bucket_limits=limits,
            bucket_counts=counts.tolist(),
            global_step=step,
        )

    @never_fails
    def after_epoch(self) -> None:
        if self._writer is not None:
            self.flush()
            self._writer.flush()

    def after_train(self) -> None:
        if self._writer is not None:
            try:
                self.flush()
                self._writer.close()
            finally:
                self._writer = None
