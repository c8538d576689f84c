"""The live view in the terminal: progress, loss, LR, throughput and the worst layers by update ratio."""

from __future__ import annotations

import math
from typing import Any

from tunekit.engine._builtin_hooks import epoch_line

from ._base import DiagnosticHook, never_fails
from ._ratios import UpdateRatioMonitor
from ._records import Record, StepRecorder


def worst_layers(
    ratios: dict[str, float | None], k: int = 3, target: float = 1e-3
) -> list[tuple[str, float]]:
    """The ``k`` layers whose ratio is furthest from ``target`` on a log scale (0 is furthest)."""

    def distance(item: tuple[str, float]) -> float:
        r = item[1]
        return math.inf if r <= 0 else abs(math.log10(r / target))

    known = [(n, r) for n, r in ratios.items() if r is not None and math.isfinite(r)]
    return sorted(known, key=distance, reverse=True)[:k]


class _Panel:
    """Rendered by rich on each refresh, from the latest host-side values (no device syncs)."""

    def __init__(self, view: LiveView) -> None:
        self.view = view

    def __rich__(self) -> Any:
        from rich.table import Table

        v = self.view
        latest = v.recorder.latest if v.recorder is not None else {}
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        loss = latest.get("train/step_loss")
        table.add_row("loss", f"{loss:.4f}" if loss is not None else "-")
        table.add_row("lr", f"{v.trainer.lr:.3g}")
        sps = latest.get("throughput/samples_per_s")
        steps = latest.get("throughput/steps_per_s")
        if steps is not None:
            table.add_row(
                "speed", f"{steps:.1f} steps/s" + (f", {sps:.0f} samples/s" if sps else "")
            )
        grad = latest.get("grad_norm/total")
        if grad is not None:
            table.add_row("grad norm", f"{grad:.3g}")
        if v.ratios is not None and v.ratios.last_ratios:
            low, high = v.ratios.bounds
            cells = []
            for name, r in worst_layers(v.ratios.last_ratios, v.worst):
                style = "red" if not low <= r <= high else "green"
                cells.append(f"[{style}]{name} {r:.2g}[/{style}]")
            table.add_row("update/weight", "  ".join(cells))
        return table


class LiveView(DiagnosticHook):
    """A rich live display (rank 0): a progress bar over the whole run and a panel of the
    latest loss, LR, throughput, gradient norm and the ``worst`` layers by update ratio.

    Warnings and errors from the record stream are printed above it as they
    happen, and one line per epoch. Transient: it leaves only those lines.
    """

    priority = 95

    def __init__(self, console: Any = None, worst: int = 3, refresh_per_second: float = 4) -> None:
        self.console = console
        self.worst = worst
        self.refresh_per_second = refresh_per_second
        self.recorder: StepRecorder | None = None
        self.ratios: UpdateRatioMonitor | None = None
        self._live: Any = None
        self._progress: Any = None
        self._task: Any = None

    @never_fails
    def before_train(self) -> None:
        from rich.console import Console, Group
        from rich.live import Live
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
        rec = t.get_hook(StepRecorder)
        self.recorder = rec if isinstance(rec, StepRecorder) else None
        ratios = t.get_hook(UpdateRatioMonitor)
        self.ratios = ratios if isinstance(ratios, UpdateRatioMonitor) else None
        if self.recorder is not None:
            self.recorder.subscribe(self._on_record)
            self.recorder.echo = False  # printed here instead
        self.console = self.console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._task = self._progress.add_task(
            "train",
            total=t.steps_per_epoch * t.epochs,
            completed=t.step,
            epoch=t.epoch + 1,
            epochs=t.epochs,
        )
        self._live = Live(
            Group(self._progress, _Panel(self)),
            console=self.console,
            refresh_per_second=self.refresh_per_second,
            transient=True,
        )
        self._live.start()

    def _on_record(self, rec: Record) -> None:
        if self._live is not None and rec.get("kind") == "event" and rec.get("level") != "info":
            style = "red" if rec.get("level") == "error" else "yellow"
            self._live.console.print(
                f"[{style}]{rec.get('level')}[/{style}]: {rec.get('message')}", soft_wrap=True
            )

    @never_fails
    def after_step(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.trainer.step)

    @never_fails
    def after_epoch(self) -> None:
        t = self.trainer
        if self._live is None:
            return
        self._progress.update(self._task, completed=t.step, epoch=min(t.epoch + 1, t.epochs))
        self._live.console.print(epoch_line(t), soft_wrap=True)

    def after_train(self) -> None:
        if self.recorder is not None:
            self.recorder.echo = True
        if self._live is not None:
            try:
                self._live.stop()
            finally:
                self._live = None
