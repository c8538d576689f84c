"""The run in the terminal: a progress bar, one line per epoch, and (live) the latest diagnostics."""

from __future__ import annotations

import math
from typing import Any

from ._hooks import HookBase
from ._metrics import MetricsStore, Record


def worst_layers(
    ratios: dict[str, float | None], k: int = 3, target: float = 1e-3
) -> list[tuple[str, float]]:
    """The ``k`` layers whose ratio is furthest from ``target`` on a log scale (0 is furthest)."""

    def distance(item: tuple[str, float]) -> float:
        r = item[1]
        return math.inf if r <= 0 else abs(math.log10(r / target))

    known = [(n, r) for n, r in ratios.items() if r is not None and math.isfinite(r)]
    return sorted(known, key=distance, reverse=True)[:k]


def epoch_line(metrics: MetricsStore, epochs: int) -> str:
    """The one line printed after each epoch: losses, validation metrics, LR, time."""
    rec = metrics.epoch
    parts = [f"epoch {int(rec['epoch'])}/{epochs}", f"train/loss {rec['train/loss']:.4f}"]
    parts += [f"{k} {v:.4f}" for k, v in rec.items() if k.startswith("val/")]
    parts.append(f"lr {rec['lr']:.3g}")
    parts.append(f"{rec['time/epoch_s']:.1f}s")
    return "  ".join(parts)


class _Panel:
    """Rendered by rich on each refresh, from the store's latest host-side values (no device syncs)."""

    def __init__(self, view: ProgressHook) -> None:
        self.view = view

    def __rich__(self) -> Any:
        from rich.table import Table

        v = self.view
        latest = v.metrics.latest
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
        prefix = "update_ratio/"
        ratios = {k[len(prefix) :]: r for k, r in latest.items() if k.startswith(prefix)}
        if ratios:
            low, high = v.bounds
            cells = []
            for name, r in worst_layers(ratios, v.worst):
                style = "red" if not low <= r <= high else "green"
                cells.append(f"[{style}]{name} {r:.2g}[/{style}]")
            table.add_row("update/weight", "  ".join(cells))
        return table


class ProgressHook(HookBase):
    """A rich progress bar over the whole run (rank 0) and one line per epoch; transient, it
    leaves only those lines.

    Plain, the bar shows the loss and LR (read every ``refresh_every`` steps). ``live``
    adds a panel of the latest loss, LR, throughput, gradient norm and the ``worst``
    layers by update/weight ratio (coloured against ``bounds``), all read from the
    metrics store, and prints the store's warnings and errors above it as they happen.
    """

    priority = 95

    def __init__(
        self,
        console: Any = None,
        *,
        live: bool = False,
        worst: int = 3,
        bounds: tuple[float, float] = (1e-4, 1e-2),
        refresh_every: int = 10,
        refresh_per_second: float = 4,
    ) -> None:
        self.console = console
        self.live = live
        self.worst = worst
        self.bounds = bounds
        self.refresh_every = refresh_every
        self.refresh_per_second = refresh_per_second
        self._display: Any = None  # a rich Live (live) or Progress (plain), started
        self._progress: Any = None
        self._task: Any = None

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
        self.console = self.console or Console(stderr=True)
        columns: list[Any] = [
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
        ]
        if not self.live:
            columns.append(TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}"))
        columns.append(TimeRemainingColumn())
        self._progress = Progress(*columns, console=self.console, transient=True)
        self._task = self._progress.add_task(
            "train",
            total=t.steps_per_epoch * t.epochs,
            completed=t.step,
            epoch=t.epoch + 1,
            epochs=t.epochs,
            loss="-",
            lr=f"{t.lr:.3g}",
        )
        if self.live:
            self.metrics.subscribe(self._on_record)
            self.metrics.echo = False  # printed here instead
            self._display = Live(
                Group(self._progress, _Panel(self)),
                console=self.console,
                refresh_per_second=self.refresh_per_second,
                transient=True,
            )
        else:
            self._display = self._progress
        self._display.start()

    def _on_record(self, rec: Record) -> None:
        if self._display is not None and rec.get("kind") == "event" and rec.get("level") != "info":
            style = "red" if rec.get("level") == "error" else "yellow"
            self._display.console.print(
                f"[{style}]{rec.get('level')}[/{style}]: {rec.get('message')}", soft_wrap=True
            )

    def after_step(self) -> None:
        t = self.trainer
        if self._display is None:
            return
        if self.live:
            self._progress.update(self._task, completed=t.step)
        elif t.step % self.refresh_every == 0 and t.loss is not None:
            self._progress.update(
                self._task, completed=t.step, loss=f"{float(t.loss.detach()):.4f}", lr=f"{t.lr:.3g}"
            )

    def after_epoch(self) -> None:
        t = self.trainer
        if self._display is None:
            return
        self._progress.update(self._task, completed=t.step, epoch=min(t.epoch + 1, t.epochs))
        self._display.console.print(epoch_line(self.metrics, t.epochs), soft_wrap=True)

    def after_train(self) -> None:
        if self.live:
            self.metrics.echo = True
        if self._display is not None:
            try:
                self._display.stop()
            finally:
                self._display = None
