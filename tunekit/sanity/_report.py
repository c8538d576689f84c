"""sanity.json and sanity.html: the data first, then the page that shows it (the figures are
drawn in ``_plots``, on the page every report shares)."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from tunekit.report import figure_html, html_page, write_text_file

from ._recipe import SanityReport

_COLOURS = {"PASS": "#1a7f37", "WARN": "#9a6700", "FAIL": "#cf222e"}


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
        if report.lr.refine is not None:
            figs.append(report.lr.refine.plot())
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
    chosen = ""
    if report.lr is not None and report.lr.chosen is not None:
        space = report.to_dict()["search_space"]
        chosen = (
            f"<p>Chosen LR: <b>{report.lr.chosen:.3g}</b> "
            f"(optim.lr = {report.recipe_lr(report.lr.chosen):.3g}); search ranges: "
            f"lr {space['lr'][0]:.3g}–{space['lr'][1]:.3g}, "
            f"weight decay {space['weight_decay'][0]:.3g}–{space['weight_decay'][1]:.3g}</p>"
        )
    title = f"tunekit sanity — {report.recipe}: {report.status}"
    body = [
        f"<h1>{html.escape(title)}</h1>",
        '<table id="verdicts">',
        "<tr><th>check</th><th>status</th><th>measured</th><th>expected</th><th>reason</th><th>fix</th></tr>",
        rows,
        "</table>",
        chosen,
        *(
            f'<div class="plot">{figure_html(fig, f"sanity-plot-{i}")}</div>'
            for i, fig in enumerate(report_figures(report))
        ),
    ]
    return html_page(title, "\n".join(body))


def write_report(
    report: SanityReport, run_dir: str | os.PathLike[str], *, html_page: bool = True
) -> dict[str, Path]:
    """Writes ``sanity.json`` (and ``sanity.html``) into ``run_dir``; returns their paths."""
    run_dir = Path(run_dir)
    paths = {
        "json": write_text_file(
            run_dir / "sanity.json", json.dumps(report.to_dict(), indent=2, allow_nan=False)
        )
    }
    if html_page:
        paths["html"] = write_text_file(run_dir / "sanity.html", render_html(report))
    return paths
