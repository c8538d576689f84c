"""The hooks every run has: checkpoints, best-model tracking, early stopping, metrics.jsonl."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from tunekit.core import save_atomic

from ._hooks import HookBase
from ._metrics import Record


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


class CheckpointHook(HookBase):
    """Writes ``last.pt`` after every epoch and ``best.pt`` when the metric improves.

    ``metric`` is a key of the epoch record (``val/top1``, ``ema/val/top1``).
    Only rank 0 writes. Files are atomic (see :func:`save_atomic`). With
    ``keep_last > 1``, ``epoch_NNN.pt`` files of the last epochs are kept too.
    """

    priority = 90  # after every hook whose state it saves

    def __init__(
        self, directory: str | os.PathLike[str], metric: str, mode: str, keep_last: int = 1
    ) -> None:
        self.directory = Path(directory)
        self.metric, self.mode, self.keep_last = metric, mode, keep_last
        self.best: float | None = None
        self.best_epoch: int | None = None

    def after_epoch(self) -> None:
        t = self.trainer
        value = self.metrics.last_eval.get(self.metric)
        is_best = value is not None and improved(value, self.best, self.mode)
        if is_best:
            assert value is not None
            self.best, self.best_epoch = value, t.epoch
        if not t.dist.is_main:
            return
        state = t.state_dict()
        save_atomic(state, self.directory / "last.pt")
        if is_best:
            save_atomic(state, self.directory / "best.pt")
        if self.keep_last > 1:
            save_atomic(state, self.directory / f"epoch_{t.epoch:03d}.pt")
            old = self.directory / f"epoch_{t.epoch - self.keep_last:03d}.pt"
            old.unlink(missing_ok=True)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state.get("best"), state.get("best_epoch")


class EarlyStopping(HookBase):
    """Stops when ``metric`` has not improved by ``min_delta`` for ``patience`` evaluations."""

    def __init__(self, metric: str, mode: str, patience: int, min_delta: float = 0.0) -> None:
        self.metric, self.mode, self.patience, self.min_delta = metric, mode, patience, min_delta
        self.best: float | None = None
        self.bad = 0
        self._seen_epoch = -1

    def after_epoch(self) -> None:
        t = self.trainer
        value = self.metrics.epoch.get(self.metric)
        if value is None:
            return  # no evaluation this epoch
        if improved(value, self.best, self.mode, self.min_delta):
            self.best, self.bad = value, 0
        else:
            self.bad += 1
            if self.bad >= self.patience:
                t.request_stop(
                    f"early stopping: {self.metric} did not improve for {self.patience} evaluations"
                )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad = state.get("best"), int(state.get("bad", 0))


class MetricsWriter(HookBase):
    """Appends every record of the metrics store (steps, events, epochs) to ``metrics.jsonl``
    (rank 0 only), in the store's batches; every report reads this one stream."""

    priority = 80

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def write_many(self, records: list[Record]) -> None:
        """Appends several records with one open of the file."""
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write("".join(json.dumps(r, allow_nan=True) + "\n" for r in records))

    def before_train(self) -> None:
        # A resumed run drops records past its checkpoint, so the stream has no duplicates.
        t = self.trainer
        if t.dist.is_main and self.path.exists():
            keep = []
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                if rec.get("step", 0) <= t.step:
                    keep.append(line)
            self.path.write_text("".join(k + "\n" for k in keep))
        self.metrics.subscribe_batches(self.write_many)
