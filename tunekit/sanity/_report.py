"""sanity.json and sanity.html: the data first, then the page that shows it."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from ._recipe import SanityReport

_COLOURS = {"PASS": "#1a7f37", "WARN": "#9a6700", "FAIL": "#cf222e"}


def _write_text(path: Path, text: str) -> None:
    # Written next to the target and renamed over it, so a reader never sees half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def report_figures(report: SanityReport) -> list[Any]:
    """The plotly figures of every check that ran, in the order of the recipe."""
    figs = []
    if report.initial is not None:
        figs.append(report.initial.plot())
    if report.overfit is not None:
        figs.append(report.overfit.plot())
    if report.lr is not None:
        figs.append(report.lr.range_test.plot())
        figs.append(report.lr.cross_check.plot())
        if report.lr.ratio is not None:
            figs.append(report.lr.ratio.plot())
    return figs


def render_html(report: SanityReport) -> str:
    """A self-contained HTML page: the verdict table, then one plot per check (plotly.js inlined)."""
    rows = "\n".join(
        "<tr>"
        f"<td>{html.escape(v.check)}</td>"
        f'<td style="color:{_COLOURS[v.status]};font-weight:bold">{v.status}</td>'
        f"<td>{html.escape(v.measured)}</td><td>{html.escape(v.expected)}</td>"
        f"<td>{html.escape(v.reason)}</td><td>{html.escape(v.fix)}</td>"
        "</tr>"
        for v in report.verdicts
    )
    plots = [
        fig.to_html(
            full_html=False,
            include_plotlyjs="inline" if i == 0 else False,
            div_id=f"sanity-plot-{i}",
        )
        for i, fig in enumerate(report_figures(report))
    ]
    chosen = ""
    if report.lr is not None and report.lr.chosen is not None:
        space = report.to_dict()["search_space"]
        chosen = (
            f"<p>Chosen LR: <b>{report.lr.chosen:.3g}</b> "
            f"(optim.lr = {report.recipe_lr(report.lr.chosen):.3g}); search ranges: "
            f"lr {space['lr'][0]:.3g}–{space['lr'][1]:.3g}, "
            f"weight decay {space['weight_decay'][0]:.3g}–{space['weight_decay'][1]:.3g}</p>"
        )
    title = f"tunekit sanity — {html.escape(report.recipe)}: {report.status}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
</style></head>
<body>
<h1>{title}</h1>
<table id="verdicts">
<tr><th>check</th><th>status</th><th>measured</th><th>expected</th><th>reason</th><th>fix</th></tr>
{rows}
</table>
{chosen}
{"".join(f'<div class="plot">{p}</div>' for p in plots)}
</body></html>
"""


def write_report(
    report: SanityReport, run_dir: str | os.PathLike[str], *, html_page: bool = True
) -> dict[str, Path]:
    """Writes ``sanity.json`` (and ``sanity.html``) into ``run_dir``; returns their paths."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": run_dir / "sanity.json"}
    _write_text(paths["json"], json.dumps(report.to_dict(), indent=2, allow_nan=False))
    if html_page:
        paths["html"] = run_dir / "sanity.html"
        _write_text(paths["html"], render_html(report))
    return paths
