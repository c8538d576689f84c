"""The run's metrics store: hooks put values in, read them back, and writers subscribe.

A step record is ``{"kind": "step", "step": s, "epoch": e, "lr": lr, <key>: value, ...}``
with ``step`` the number of finished optimizer steps and ``epoch`` the fractional epoch
at that step (``1.0`` is the end of the first epoch). An event record is ``{"kind":
"event", "step", "epoch", "event", "level", "message", ...}``. An epoch record is
``{"kind": "epoch", "epoch", "step", "train/loss", "lr", "time/epoch_s", "val/...",
"<side model>/val/...", ...}``: the model's validation metrics as ``val/top1``, a side
model's (EMA, SWA, snapshots, TTA) as ``ema/val/top1``.

The trainer closes a step's and an epoch's record where the hooks of priority
:data:`WRITE_PRIORITY` would run: producers run before it, writers after it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

Record = dict[str, Any]
Sink = Callable[[Record], None]
BatchSink = Callable[[list[Record]], None]

#: Hooks below this priority put a step's or an epoch's values; the record is closed and
#: handed to the writers here, so hooks at or above it see the whole record.
WRITE_PRIORITY = 75

log = logging.getLogger("tunekit.diagnostics")


class MetricsStore:
    """Step scalars, events and epoch records of one run (owned by its :class:`Trainer`).

    Producers :meth:`put` a step's scalars, :meth:`event` what happened and
    :meth:`put_epoch` / :meth:`put_eval` an epoch's values. Readers find the last
    value of every step key in :attr:`latest`, the epoch records in :attr:`history`
    and the latest evaluation in :attr:`last_eval`. Writers :meth:`subscribe`: a
    sink gets every record as it is closed; a batched sink gets them in lists of
    ``flush_every`` (and at each epoch's end, and when training ends), so a file is
    not opened every step. Records reach the writers on rank 0 only.

    Args:
        is_main: whether this process writes (rank 0).
        flush_every: records per batch for the batched sinks.
    """

    def __init__(self, *, is_main: bool = True, flush_every: int = 50) -> None:
        self.is_main = is_main
        self.flush_every = flush_every
        #: the last value of every step key (and ``step``, ``epoch``, ``lr``)
        self.latest: dict[str, Any] = {}
        #: every event of this run (on every rank)
        self.events: list[Record] = []
        #: the epoch records (without ``kind``), as checkpoints keep them
        self.history: list[Record] = []
        #: the latest evaluation: ``val/...`` and ``<side model>/val/...``
        self.last_eval: dict[str, float] = {}
        #: this step's tensors for histograms (``updates/<parameter>``), until the next step
        self.histograms: dict[str, Any] = {}
        #: log warnings and errors (a live view that prints them turns this off)
        self.echo = True
        self.steps_per_epoch = 1
        self._step = 0
        self._taking: int | None = None
        self._pending: dict[str, float] = {}
        self._buffer: list[Record] = []
        self._sinks: list[Sink] = []
        self._batch_sinks: list[BatchSink] = []

    # -- writers --------------------------------------------------------------

    def subscribe(self, sink: Sink) -> None:
        """``sink(record)`` is called with every step, event and epoch record (rank 0)."""
        if sink not in self._sinks:
            self._sinks.append(sink)

    def subscribe_batches(self, sink: BatchSink) -> None:
        """``sink(records)`` is called with the records buffered since the last flush."""
        if sink not in self._batch_sinks:
            self._batch_sinks.append(sink)

    def flush(self) -> None:
        """Hands the buffered records to the batched sinks."""
        buffer, self._buffer = self._buffer, []
        if buffer:
            for sink in list(self._batch_sinks):
                sink(buffer)

    # -- producers ------------------------------------------------------------

    @property
    def current_step(self) -> int:
        """The step being taken (during a step) or the last one finished."""
        return self._taking if self._taking is not None else self._step

    def put(self, key: str, value: float) -> None:
        """Adds a scalar to this step's record; a non-finite value is kept (JSON NaN/Infinity)."""
        self._pending[key] = float(value)

    def put_scalars(self, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            self._pending[key] = float(value)

    def put_histogram(self, tag: str, tensor: Any) -> None:
        """Keeps a tensor of this step for the histogram writers (until the next step starts)."""
        self.histograms[tag] = tensor

    def event(
        self,
        name: str,
        message: str,
        *,
        level: str = "info",
        step: int | None = None,
        echo: bool = True,
        **fields: Any,
    ) -> Record:
        """Records an event (a loss spike, a layer warning, a stopped step) and returns its record.

        A warning or an error is logged too, unless ``echo`` is false (its producer logs it).
        """
        s = self.current_step if step is None else step
        rec: Record = {
            "kind": "event",
            "step": s,
            "epoch": self.epoch_at(s),
            "event": name,
            "level": level,
            "message": message,
            **fields,
        }
        self.events.append(rec)
        if level != "info" and echo and self.echo and self.is_main:
            log.warning("step %d: %s", s, message)
        self._emit(rec)
        return rec

    @property
    def epoch(self) -> Record:
        """This epoch's record (the last one; empty before the first epoch ends)."""
        return self.history[-1] if self.history else {}

    @property
    def evaluated(self) -> bool:
        """Whether the epoch that just ended was evaluated."""
        return any(k.startswith("val/") for k in self.epoch)

    def put_epoch(self, key: str, value: float) -> None:
        """Adds a value to this epoch's record (``swa/n_averaged``, ``phase``)."""
        self.history[-1][key] = value

    def put_eval(self, metrics: dict[str, float], model: str | None = None) -> None:
        """Adds validation metrics (``val/x``) to this epoch's record and :attr:`last_eval`;
        a side model's as ``<model>/val/x`` (``ema/val/top1``)."""
        named = metrics if model is None else {f"{model}/{k}": v for k, v in metrics.items()}
        self.history[-1].update(named)
        self.last_eval.update(named)

    # -- the trainer's calls ----------------------------------------------------

    def start(self, step: int, steps_per_epoch: int) -> None:
        """Training starts (or resumes) after ``step`` finished steps."""
        self._step, self._taking = step, None
        self.steps_per_epoch = max(steps_per_epoch, 1)

    def begin_step(self, step: int) -> None:
        self._taking = step
        if self.histograms:
            self.histograms = {}

    def end_step(self, step: int, lr: Callable[[], float]) -> None:
        """Closes step ``step``'s record (when anything was put) and hands it on."""
        self._step, self._taking = step, None
        if not self._pending:
            return
        rec: Record = {"kind": "step", "step": step, "epoch": self.epoch_at(step), "lr": lr()}
        rec.update(self._pending)
        self._pending = {}
        self.latest.update(rec)
        self._emit(rec)

    def begin_epoch_record(self, record: Record, evaluation: dict[str, float] | None) -> None:
        """Starts the record of the epoch that just ended (``evaluation`` when it was evaluated)."""
        self.history.append(record)
        if evaluation is not None:
            self.last_eval = {}
            self.put_eval(evaluation)

    def end_epoch(self) -> None:
        """Hands this epoch's record on, after the step records it follows."""
        self._emit({"kind": "epoch", **self.epoch})
        self.flush()

    def end_train(self) -> None:
        self._pending, self._taking = {}, None
        try:
            self.flush()
        except Exception as exc:
            log.warning("could not write the last step records: %s", exc)

    # -- state ----------------------------------------------------------------

    def load_history(self, history: list[Record]) -> None:
        """The epoch records of a checkpoint; the last evaluation comes back from them."""
        self.history = list(history)
        last = self.epoch
        self.last_eval = {k: v for k, v in last.items() if k.startswith("val/") or "/val/" in k}

    # -- helpers --------------------------------------------------------------

    def epoch_at(self, step: int) -> float:
        # Every epoch has the same number of steps, so the fraction follows from the step alone.
        return round(step / self.steps_per_epoch, 4)

    def _emit(self, rec: Record) -> None:
        if not self.is_main:
            return
        self._buffer.append(rec)
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
        if len(self._buffer) >= self.flush_every and rec["kind"] == "step":
            self.flush()
