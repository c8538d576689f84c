"""The run report: one self-contained HTML file (plotly.js inlined, so it opens offline)."""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._data import (
    ActivationData,
    EventRow,
    GradData,
    HeatmapData,
    LossData,
    RatioBand,
    Series,
    StepAxis,
    activation_data,
    event_rows,
    grad_data,
    loss_data,
    lr_data,
    metric_data,
    ratio_band,
    ratio_heatmap,
    step_axis,
)
from ._diagnose import Verdict, curves_from_run, diagnose_curves
from ._page import figure_html, html_page, write_text_file
from ._runs import RunRecords, load_run


@dataclass
class ReportData:
    """Everything the report shows, as plain values."""

    title: str
    run_dir: str
    loss: LossData
    metrics: list[Series]
    #: what the metrics' x axis (optimizer steps) means in epochs and images
    axis: StepAxis
    lr: Series
    heatmap: HeatmapData
    band: RatioBand
    grads: GradData
    activations: ActivationData
    events: list[EventRow]
    verdicts: list[Verdict]
    notes: list[str] = field(default_factory=list)


def report_data(run: RunRecords) -> ReportData:
    """Computes every plot's data from a run's records."""
    heat = ratio_heatmap(run)
    notes = []
    if run.skipped_lines:
        notes.append(f"{run.skipped_lines} unreadable line(s) in metrics.jsonl were skipped")
    if heat.zero_layers:
        notes.append("ratio exactly 0 (not trained) for: " + ", ".join(heat.zero_layers))
    metrics = metric_data(run)
    return ReportData(
        title=f"tunekit run report: {run.name}",
        run_dir=str(run.run_dir),
        loss=loss_data(run),
        metrics=metrics,
        axis=step_axis(metrics),
        lr=lr_data(run),
        heatmap=heat,
        band=ratio_band(heat),
        grads=grad_data(run),
        activations=activation_data(run),
        events=event_rows(run),
        verdicts=diagnose_curves(curves_from_run(run)),
        notes=notes,
    )


def write_report(
    run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> Path:
    """Writes the HTML report of ``run_dir`` (to ``RUN_DIR/report.html`` by default) and returns its path.

    Example:
        >>> write_report("runs/digits-20260101-120000")  # doctest: +SKIP
        PosixPath('runs/digits-20260101-120000/report.html')
    """
    run = load_run(run_dir)
    return write_text_file(
        Path(out) if out else run.run_dir / "report.html", render_html(report_data(run))
    )


# -- rendering -----------------------------------------------------------------

_LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "height": 380,
    "margin": {"l": 60, "r": 20, "t": 40, "b": 45},
    "legend": {"orientation": "h", "y": -0.2},
}


def _fig(title: str, xtitle: str, ytitle: str, **extra: Any) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(title=title, xaxis_title=xtitle, yaxis_title=ytitle, **{**_LAYOUT, **extra})
    return fig


def loss_figure(d: LossData) -> Any | None:
    import plotly.graph_objects as go

    if not d.losses and not d.epoch_train.x:
        return None
    fig = _fig("Train loss", "step", "loss")
    if d.losses:
        fig.add_trace(
            go.Scattergl(
                x=d.steps,
                y=d.losses,
                mode="markers",
                name="step loss",
                marker={"size": 3, "opacity": 0.35},
            )
        )
        fig.add_trace(
            go.Scatter(
                x=d.steps,
                y=d.moving_average,
                mode="lines",
                name=f"moving average ({d.window} steps)",
                line={"width": 2},
            )
        )
    if d.epoch_train.x:
        fig.add_trace(
            go.Scatter(
                x=d.epoch_train.x,
                y=d.epoch_train.y,
                mode="lines+markers",
                name=d.epoch_train.name,
            )
        )
    if d.epoch_val.x:
        fig.add_trace(
            go.Scatter(
                x=d.epoch_val.x,
                y=d.epoch_val.y,
                mode="lines+markers",
                name="validation loss",
            )
        )
    for s in d.non_finite_steps:
        fig.add_vline(x=s, line={"color": "red", "dash": "dot"}, annotation_text="non-finite")
    return fig


def step_hover(s: Series) -> dict[str, Any]:
    """A trace's ``customdata`` and ``hovertemplate``: step, epoch and images seen at each point."""
    return {
        "customdata": [[e, i] for e, i in zip(s.epochs, s.images)],
        "hovertemplate": "%{fullData.name}<br>step %{x}<br>epoch %{customdata[0]:.2f}"
        "<br>images %{customdata[1]:,.0f}<br>value %{y:.4g}<extra></extra>",
    }


def label_steps(fig: Any, axis: StepAxis) -> None:
    """Titles the x axis (optimizer steps) and, where every curve agrees on the steps of an
    epoch, labels the epochs on a second axis along the top."""
    import plotly.graph_objects as go

    title = "optimizer step"
    if axis.images_per_step:
        title += f" ({axis.images_per_step:g} images a step)"
    fig.update_layout(xaxis_title=title)
    if not axis.epoch_ticks:
        return
    steps = [x for x, _ in axis.epoch_ticks]
    # An invisible trace on the top axis makes plotly draw it; `matches` keeps it aligned.
    fig.add_trace(
        go.Scatter(x=steps, y=[None] * len(steps), xaxis="x2", showlegend=False, hoverinfo="skip")
    )
    fig.update_layout(
        xaxis2={
            "overlaying": "x",
            "side": "top",
            "matches": "x",
            "tickvals": steps,
            "ticktext": [f"{e:g}" for _, e in axis.epoch_ticks],
            "title": f"epoch ({axis.steps_per_epoch:g} steps)",
            "showgrid": False,
        },
        margin={**_LAYOUT["margin"], "t": 80},
    )


def metrics_figure(metrics: list[Series], axis: StepAxis | None = None) -> Any | None:
    import plotly.graph_objects as go

    if not metrics:
        return None
    fig = _fig("Validation metrics", "optimizer step", "value")
    for s in metrics:
        fig.add_trace(go.Scatter(x=s.x, y=s.y, mode="lines+markers", name=s.name, **step_hover(s)))
    label_steps(fig, axis or step_axis(metrics))
    return fig


def lr_figure(s: Series) -> Any | None:
    import plotly.graph_objects as go

    if not s.x:
        return None
    fig = _fig("Learning rate", "step", "learning rate")
    fig.add_trace(go.Scatter(x=s.x, y=s.y, mode="lines", name=s.name))
    return fig


def heatmap_figure(h: HeatmapData) -> Any | None:
    import plotly.graph_objects as go

    if not h.layers:
        return None
    target = math.log10(h.target)
    ticks = list(range(-7, 1))
    fig = _fig(
        "Update/weight ratio per layer (log10; white = 1e-3)",
        "step",
        "",
        height=max(320, 18 * len(h.layers) + 120),
        margin={"l": 180, "r": 20, "t": 40, "b": 45},
    )
    fig.add_trace(
        go.Heatmap(
            x=h.steps,
            y=h.layers,
            z=h.z,
            zmid=target,
            zmin=target - 3,
            zmax=target + 3,
            colorscale="RdBu_r",
            colorbar={"title": "ratio", "tickvals": ticks, "ticktext": [f"1e{t}" for t in ticks]},
            hovertemplate="layer %{y}<br>step %{x}<br>log10 ratio %{z:.2f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    return fig


def band_figure(b: RatioBand) -> Any | None:
    import plotly.graph_objects as go

    if not b.steps:
        return None
    fig = _fig("Update/weight ratio across layers", "step", "ratio", yaxis_type="log")
    low, high = b.bounds
    fig.add_hrect(y0=low, y1=high, fillcolor="green", opacity=0.07, line_width=0)
    fig.add_trace(
        go.Scatter(x=b.steps, y=b.high, mode="lines", name="largest", line={"color": "#d62728"})
    )
    fig.add_trace(
        go.Scatter(x=b.steps, y=b.median, mode="lines", name="median", line={"color": "#1f77b4"})
    )
    fig.add_trace(
        go.Scatter(x=b.steps, y=b.low, mode="lines", name="smallest", line={"color": "#2ca02c"})
    )
    fig.add_hline(y=1e-3, line={"dash": "dash", "color": "black"}, annotation_text="1e-3")
    return fig


def grad_figure(g: GradData) -> Any | None:
    import plotly.graph_objects as go

    if not g.total.x and not g.layers:
        return None
    fig = _fig("Gradient norms", "step", "norm", yaxis_type="log")
    if g.total.x:
        fig.add_trace(go.Scattergl(x=g.total.x, y=g.total.y, mode="lines", name="total"))
    for s in g.layers:
        # Many layers: only the global norm is shown at first; click a layer in the legend to add it.
        fig.add_trace(
            go.Scatter(
                x=s.x,
                y=s.y,
                mode="lines",
                name=s.name,
                visible="legendonly" if len(g.layers) > 8 else True,
            )
        )
    return fig


def activation_figure(a: ActivationData) -> Any | None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    stats = [s for s in ("mean", "std", "dead", "saturated") if s in a.stats]
    if not stats:
        return None
    fig = make_subplots(rows=1, cols=len(stats), subplot_titles=[_STAT_TITLES[s] for s in stats])
    for col, stat in enumerate(stats, start=1):
        for s in a.stats[stat]:
            fig.add_trace(
                go.Scatter(
                    x=s.x,
                    y=s.y,
                    mode="lines+markers",
                    name=s.name,
                    legendgroup=s.name,
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
    fig.update_layout(title="Activation statistics", **_LAYOUT)
    return fig


_STAT_TITLES = {
    "mean": "mean",
    "std": "std",
    "dead": "dead units (fraction)",
    "saturated": "saturated (fraction)",
}


def render_html(data: ReportData) -> str:
    """The report as one HTML document, plotly.js included once."""
    sections: list[str] = []
    figures = [
        ("loss", loss_figure(data.loss), "No train loss was recorded."),
        (
            "metrics",
            metrics_figure(data.metrics, data.axis),
            "No validation metrics were recorded.",
        ),
        ("lr", lr_figure(data.lr), "No learning rate was recorded."),
        (
            "ratios",
            heatmap_figure(data.heatmap),
            "No update/weight ratios were recorded (diagnostics off?).",
        ),
        ("ratio-band", band_figure(data.band), None),
        ("grads", grad_figure(data.grads), "No gradient norms were recorded (diagnostics off?)."),
        (
            "activations",
            activation_figure(data.activations),
            "No activation statistics were recorded.",
        ),
    ]
    for div_id, fig, missing in figures:
        if fig is not None:
            sections.append(figure_html(fig, div_id))
        elif missing:
            sections.append(f'<p class="missing">{html.escape(missing)}</p>')
    e = html.escape
    verdicts = (
        "".join(
            f'<div class="verdict"><h3>{e(v.title)}</h3><p>{e(v.evidence)}.</p><p class="advice">{e(v.advice)}</p></div>'
            for v in data.verdicts
        )
        or '<p class="ok">Nothing wrong in the curves (checked: divergence, flat start, plateau, early decay, still improving, overfitting, underfitting).</p>'
    )
    events = "".join(
        f'<tr class="{e(r.level)}"><td>{r.step}</td><td>{r.epoch:.2f}</td><td>{e(r.event)}</td><td>{e(r.level)}</td><td>{e(r.message)}</td></tr>'
        for r in data.events
    )
    events_html = (
        f"<table><thead><tr><th>step</th><th>epoch</th><th>event</th><th>level</th><th>message</th></tr></thead><tbody>{events}</tbody></table>"
        if data.events
        else '<p class="ok">No events (no loss spikes, layer warnings or stopped steps).</p>'
    )
    notes = "".join(f"<li>{e(n)}</li>" for n in data.notes)
    body = [
        f"<h1>{e(data.title)}</h1>",
        f'<p class="run">{e(data.run_dir)}</p>',
        "<h2>What the curves show</h2>",
        verdicts,
        f"<ul class='notes'>{notes}</ul>" if notes else "",
        "<h2>Curves</h2>",
        *(f'<section class="plot">{s}</section>' for s in sections),
        "<h2>Events</h2>",
        events_html,
    ]
    return html_page(data.title, "\n".join(body), style=_STYLE)


_STYLE = """
.run { color: #666; font-family: monospace; }
.verdict { border-left: 4px solid #d62728; background: #fff5f5; padding: 4px 14px; margin: 10px 0; }
.verdict h3 { margin: 6px 0; } .advice { font-weight: 600; }
table { width: 100%; }
tr.warning td { background: #fffbe6; } tr.error td { background: #fff0f0; }
section.plot { margin: 18px 0; }
"""
