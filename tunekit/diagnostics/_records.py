"""One stream of records per run: the producers add scalars, the writers receive records.

A step record is ``{"kind": "step", "step": s, "epoch": e, <scalar>: value, ...}``
with ``step`` the number of finished optimizer steps and ``epoch`` the
fractional epoch at that step (``1.0`` is the end of the first epoch). An
event record is ``{"kind": "event", "step", "epoch", "event", "level",
"message", ...}``. Both go into the run's ``metrics.jsonl`` through the
:class:`~tunekit.engine._builtin_hooks.MetricsWriter` (next to its epoch
records) and to every subscribed writer (TensorBoard, the live view).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from tunekit.engine._builtin_hooks import MetricsWriter

from ._base import DiagnosticHook, log, never_fails

Record = dict[str, Any]
Sink = Callable[[Record], None]


class StepRecorder(DiagnosticHook):
    """Collects the scalars of each step into one record and hands records on.

    Args:
        flush_every: step records are written to ``metrics.jsonl`` in batches
            of this many (and at every epoch's end, and when training ends,
            also when it raised), so the file is not opened every step.
        throughput_every: steps between throughput measurements.
    """

    # After the producers (guards 10, ratios 20, activations 30), before the
    # MetricsWriter (80) so that an epoch's step records precede its epoch record.
    priority = 75

    def __init__(self, flush_every: int = 50, throughput_every: int = 20) -> None:
        self.flush_every = flush_every
        self.throughput_every = throughput_every
        self.latest: dict[str, Any] = {}  # the last value of every key
        self.events: list[Record] = []
        #: log warnings and errors (a live view that prints them turns this off)
        self.echo = True
        self._pending: dict[str, float] = {}
        self._buffer: list[Record] = []
        self._sinks: list[Sink] = []
        self._metrics: MetricsWriter | None = None
        self._in_step = False
        self._taking = 0
        self._steps_per_epoch = 1
        self._mark_time = 0.0
        self._mark_step = 0
        self._samples = 0

    # -- for producers ----------------------------------------------------

    def subscribe(self, sink: Sink) -> None:
        """``sink(record)`` is called with every step, event and epoch record."""
        if sink not in self._sinks:
            self._sinks.append(sink)

    @property
    def current_step(self) -> int:
        """The step being taken (during a step) or the last one finished."""
        return self._taking if self._in_step else self.trainer.step

    def add(self, key: str, value: float) -> None:
        """Adds a scalar to this step's record; a non-finite value is kept (JSON NaN/Infinity)."""
        self._pending[key] = float(value)

    def update(self, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            self.add(key, value)

    def event(
        self,
        name: str,
        message: str,
        *,
        level: str = "info",
        step: int | None = None,
        **fields: Any,
    ) -> Record:
        """Records an event (a loss spike, a layer warning, a stopped step) and returns its record."""
        t = self.trainer
        s = self.current_step if step is None else step
        rec: Record = {
            "kind": "event",
            "step": s,
            "epoch": self._epoch_at(s),
            "event": name,
            "level": level,
            "message": message,
            **fields,
        }
        self.events.append(rec)
        if level != "info" and self.echo and t.dist.is_main:
            log.warning("step %d: %s", s, message)
        if t.dist.is_main:
            self._buffer.append(rec)
            self._emit(rec)
        return rec

    # -- lifecycle --------------------------------------------------------

    @never_fails
    def before_train(self) -> None:
        t = self.trainer
        hook = t.get_hook(MetricsWriter)
        self._metrics = hook if isinstance(hook, MetricsWriter) else None
        self._mark_time, self._mark_step, self._samples = time.perf_counter(), t.step, 0
        self._steps_per_epoch = max(t.steps_per_epoch, 1)  # len(loader) is not free: once a run

    def before_step(self) -> None:
        self._in_step, self._taking = True, self.trainer.step + 1

    @never_fails
    def after_step(self) -> None:
        t = self.trainer
        self._in_step = False
        # t.batch is the step's last batch; with accumulation a step took accumulate_steps.
        self._samples += _batch_size(t.batch) * t.dist.world_size * t.accumulate_steps
        if t.step - self._mark_step >= self.throughput_every:
            now = time.perf_counter()
            elapsed = max(now - self._mark_time, 1e-9)
            self._pending["throughput/steps_per_s"] = (t.step - self._mark_step) / elapsed
            if self._samples:
                self._pending["throughput/samples_per_s"] = self._samples / elapsed
            self._mark_time, self._mark_step, self._samples = now, t.step, 0
        if not self._pending:
            return
        rec: Record = {"kind": "step", "step": t.step, "epoch": self._epoch_at(t.step), "lr": t.lr}
        rec.update(self._pending)
        self._pending = {}
        self.latest.update(rec)
        if t.dist.is_main:
            self._buffer.append(rec)
            self._emit(rec)
            if len(self._buffer) >= self.flush_every:
                self.flush()

    @never_fails
    def after_epoch(self) -> None:
        self.flush()
        t = self.trainer
        if t.dist.is_main and t.history:
            self._emit({"kind": "epoch", **t.history[-1]})

    def after_train(self) -> None:
        # Not decorated: it must run even when this hook was disabled, so nothing buffered is lost.
        self._in_step = False
        self._pending = {}
        try:
            self.flush()
        except Exception as exc:
            log.warning("could not write the last step records: %s", exc)

    def flush(self) -> None:
        """Writes the buffered records to ``metrics.jsonl`` (rank 0, when a MetricsWriter is registered)."""
        buffer, self._buffer = self._buffer, []
        if self._metrics is not None:
            self._metrics.write_many(buffer)

    # -- helpers ----------------------------------------------------------

    def _emit(self, rec: Record) -> None:
        for sink in list(self._sinks):
            try:
                sink(rec)
            except Exception as exc:  # a writer failing must not stop the others or the run
                self._sinks.remove(sink)
                log.warning(
                    "a record writer failed (%s: %s); it gets no more records",
                    type(exc).__name__,
                    exc,
                )

    def _epoch_at(self, step: int) -> float:
        # Every epoch has the same number of steps, so the fraction follows from the step alone.
        return round(step / self._steps_per_epoch, 4)


def _batch_size(batch: Any) -> int:
    """Samples in a loader batch: a tensor, or a tuple whose first item is a tensor or a list."""
    first = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
    if isinstance(first, torch.Tensor):
        return int(first.shape[0]) if first.dim() else 1
    if isinstance(first, (list, tuple)):
        return len(first)
    return 0
