"""The live table of a study's trials: data first (``trial_rows``), then a rich table."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from ._space import recipe_values
from ._stages import StagedSearch, count_trials
from ._study import ZERO_SUFFIX


def trial_rows(search: StagedSearch, limit: int = 20) -> list[dict[str, Any]]:
    """The latest trials across stages, as plain values (running ones first)."""
    rows = []
    for stage, t in search.all_trials():
        steps = sorted(t.intermediate_values)
        rows.append(
            {
                "stage": stage.name,
                "cell": stage.cell.key,
                "trial": t.number,
                "state": t.state.name.lower(),
                "params": recipe_values(t.params),
                "step": steps[-1] if steps else None,
                "current": t.intermediate_values[steps[-1]] if steps else None,
                "value": t.value,
                "note": t.user_attrs.get("failure_reason") or "",
            }
        )
    running = [r for r in rows if r["state"] == "running"]
    rest = [r for r in rows if r["state"] != "running"]
    return (running + rest[::-1])[:limit]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def render_table(search: StagedSearch) -> Any:
    """A rich Table of :func:`trial_rows` with the stage counts in its caption."""
    from rich.table import Table

    rows = trial_rows(search)
    # An or_zero pair is one column: its switch's value shows as the parameter's 0.
    names = [n for n in search.base_space if not n.endswith(ZERO_SUFFIX)]
    table = Table(
        title=f"study {search.study.name} — {search.study.metric} ({search.study.direction})"
    )
    for col in ["stage", "trial", "state", *names, "step", "current", "value"]:
        table.add_column(col, justify="right" if col not in ("stage", "state") else "left")
    style = {
        "running": "cyan",
        "complete": "green",
        "pruned": "yellow",
        "fail": "red",
        "waiting": "dim",
    }
    for r in rows:
        table.add_row(
            r["stage"],
            str(r["trial"]),
            f"[{style.get(r['state'], '')}]{r['state']}[/]",
            *(_fmt(r["params"].get(n)) for n in names),
            _fmt(r["step"]),
            _fmt(r["current"]),
            _fmt(r["value"]),
        )
    parts = []
    for st in search.stages:
        c = count_trials(search.trials(st))
        if c.accounted:
            planned = sum(search.planned(u) for u in search.units(st))
            parts.append(
                f"{st.name}: {c.complete} done, {c.pruned} pruned, {c.running} running, "
                f"{c.failed} failed / {planned}"
            )
    table.caption = " · ".join(parts)
    return table


class LiveTable:
    """Redraws :func:`render_table` every ``every`` seconds in a thread, until stopped."""

    def __init__(self, search: StagedSearch, every: float = 1.0) -> None:
        self.search, self.every = search, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tunekit-live", daemon=True)

    def __enter__(self) -> LiveTable:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console(stderr=True)
        with Live(console=console, refresh_per_second=2, transient=False) as live:
            while True:
                # A storage read racing a writer can fail: the next refresh draws again.
                with contextlib.suppress(Exception):
                    live.update(render_table(self.search))
                if self._stop.wait(self.every):
                    with contextlib.suppress(Exception):
                        live.update(render_table(self.search))
                    return
