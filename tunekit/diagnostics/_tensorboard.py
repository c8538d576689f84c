"""TensorBoard event files: the scalars of the record stream, plus weight and update histograms."""

from __future__ import annotations

import io
import itertools
import os
import socket
import time
from pathlib import Path
from typing import Any

import torch
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
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


_FILES = itertools.count()  # a process's event files get distinct names, as TensorBoard's do


class EventFile:
    """An event file written on the training thread, a batch of events per write.

    TensorBoard's ``SummaryWriter`` hands every event through a queue to a writer thread,
    which frames and writes it, one hand-off and one wake-up per event. Here each event is
    serialised and framed (TensorBoard's ``RecordWriter``, the TFRecord format) into a
    buffer, and the buffer goes to the file in one write at :meth:`flush` (with the batching
    in :class:`TensorBoardWriter`, TensorBoard's work on the digits CNN fell from about 50 us
    a step to about 15, benchmarks/RESULTS.md). The file's name and first events are those ``SummaryWriter``
    writes, ``purge_step`` included, so TensorBoard reads it as one of its own.
    """

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        from tensorboard.summary.writer.record_writer import RecordWriter

        log_dir.mkdir(parents=True, exist_ok=True)
        name = (
            f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
            f"{os.getpid()}.{next(_FILES)}"
        )
        self.path = log_dir / name
        self._file = open(self.path, "wb")  # noqa: SIM115 -- open for the run, closed by close()
        self._buffer = io.BytesIO()
        self._records = RecordWriter(self._buffer)
        self.add(Event(file_version="brain.Event:2"))
        if purge_step is not None:
            # TensorBoard drops the events of earlier files from this step on.
            self.add(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))
        self.flush()

    def add(self, event: Event) -> None:
        event.wall_time = event.wall_time or time.time()
        self._records.write(event.SerializeToString())

    def add_summary(self, summary: Summary, step: int) -> None:
        self.add(Event(summary=summary, step=step))

    def flush(self) -> None:
        if self._buffer.tell():
            self._file.write(self._buffer.getbuffer()[: self._buffer.tell()])
            self._file.flush()
            self._buffer.seek(0)
            self._buffer.truncate()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._file.close()


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

    Records are kept and written in batches of ``batch`` (and at every epoch's
    end), on the training thread (:class:`EventFile`).

    Args:
        log_dir: the event files' directory.
        histogram_interval: steps between histograms; None for none.
        batch: records per write to the event file.
    """

    priority = 86

    def __init__(
        self, log_dir: str | os.PathLike[str], histogram_interval: int | None = 500, batch: int = 50
    ) -> None:
        self.log_dir = Path(log_dir)
        self.histogram_interval = histogram_interval
        self.batch = batch
        self.bins = 64
        self._kept: list[Record] = []
        self._writer: EventFile | None = None

    @never_fails
    def before_train(self) -> None:
        t = self.trainer
        if not t.dist.is_main:
            return
        fast_record_checksums()
        self._writer = EventFile(self.log_dir, purge_step=t.step if t.step > 0 else None)
        self.metrics.subscribe(self.write_record)

    def write_record(self, rec: Record) -> None:
        """Keeps one record for the next batch (a record is not changed once handed on)."""
        if self._writer is None or self.disabled:
            return
        self._kept.append(rec)
        if len(self._kept) >= self.batch:
            self.flush()

    def flush(self) -> None:
        """Writes the kept records' events. They are built here, a batch at a time, and not
        as each record comes: in the training loop the interpreter's caches are cold after
        every forward and backward, and building one step's event there took about 50 us
        against 7 us in a batch."""
        kept, self._kept = self._kept, []
        if self._writer is None:
            return
        for rec in kept:
            self._write(rec)
        self._writer.flush()

    def _write(self, rec: Record) -> None:
        """One record's event: its scalars, or an event's message as text (``events/<name>``)."""
        assert self._writer is not None
        step = int(rec.get("step", 0))
        if rec.get("kind") == "event":
            from torch.utils.tensorboard.summary import text

            tag = f"events/{rec.get('event', 'event')}"
            self._writer.add_summary(text(tag, str(rec.get("message", ""))), step)
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
            # One event per record, holding all its scalars: add_scalar makes an event per
            # value, and a measured step's record carries dozens of values.
            self._writer.add_summary(Summary(value=values), step)

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
        # Binned on the tensor's device with torch.histc and written as a raw
        # histogram: add_histogram copies the tensor to numpy and bins it there,
        # which costs more than the rest of the diagnostics together.
        from torch.utils.tensorboard.summary import histogram_raw

        assert self._writer is not None
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

        summary = histogram_raw(
            tag,
            stats[0],
            stats[1],
            int(finite.numel()),
            stats[2],
            stats[3],
            limits,
            counts.tolist(),
        )
        self._writer.add_summary(summary, step)

    @never_fails
    def after_epoch(self) -> None:
        if self._writer is not None:
            self.flush()

    def after_train(self) -> None:
        if self._writer is not None:
            try:
                self.flush()
                self._writer.close()
            finally:
                self._writer = None
