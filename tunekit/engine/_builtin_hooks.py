"""The hooks every run has: checkpoints, best-model tracking, early stopping, metrics, progress."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunekit.core import save_atomic

from ._hooks import HookBase

if TYPE_CHECKING:
    from ._trainer import Trainer


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


class CheckpointHook(HookBase):
    """Writes ``last.pt`` after every epoch and ``best.pt`` when the metric improves.

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
        value = t.last_eval.get(self.metric)
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
        value = t.last_eval.get(self.metric)
        if value is None or t.history[-1].get(self.metric) is None:
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
    """Appends one JSON line per epoch record to ``metrics.jsonl`` (rank 0 only).

    Other hooks add step-level records through :meth:`write`; every report
    reads this one stream.
    """

    priority = 80

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def write(self, record: dict[str, Any]) -> None:
        t = self.trainer
        if not t.dist.is_main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record, allow_nan=True) + "\n")

    def write_many(self, records: list[dict[str, Any]]) -> None:
        """Appends several records with one open of the file (step records come in batches)."""
        t = self.trainer
        if not t.dist.is_main or not records:
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

    def after_epoch(self) -> None:
        self.write({"kind": "epoch", **self.trainer.history[-1]})


def epoch_line(trainer: Trainer) -> str:
    """The one line printed after each epoch: losses, validation metrics, LR, time."""
    rec = trainer.history[-1]
    parts = [f"epoch {trainer.epoch}/{trainer.epochs}", f"train/loss {rec['train/loss']:.4f}"]
    parts += [f"{k} {v:.4f}" for k, v in rec.items() if k.startswith("val/")]
    parts.append(f"lr {rec['lr']:.3g}")
    parts.append(f"{rec['time/epoch_s']:.1f}s")
    return "  ".join(parts)


class ProgressHook(HookBase):
    """A rich progress bar over the whole run, with loss and LR, plus one line per epoch."""

    priority = 95

    def __init__(self, console: Any = None, refresh_every: int = 10) -> None:
        self.console = console
        self.refresh_every = refresh_every
        self._progress: Any = None
        self._task: Any = None
        self._t0 = 0.0

    def before_train(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        t = self.trainer
        if not t.dist.is_main:
            return
        self.console = self.console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        total = t.steps_per_epoch * t.epochs
        self._task = self._progress.add_task(
            "train",
            total=total,
            completed=t.step,
            epoch=t.epoch + 1,
            epochs=t.epochs,
            loss="-",
            lr=f"{t.lr:.3g}",
        )
        self._progress.start()
        self._t0 = time.perf_counter()

    def after_step(self) -> None:
        t = self.trainer
        if self._progress is None:
            return
        if t.step % self.refresh_every == 0 and t.loss is not None:
            self._progress.update(
                self._task, completed=t.step, loss=f"{float(t.loss.detach()):.4f}", lr=f"{t.lr:.3g}"
            )

    def after_epoch(self) -> None:
        t = self.trainer
        if self._progress is None:
            return
        self._progress.update(self._task, completed=t.step, epoch=min(t.epoch + 1, t.epochs))
        self._progress.console.print(epoch_line(t), soft_wrap=True)

    def after_train(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
