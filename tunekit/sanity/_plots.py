"""The plotly figure of each probe, drawn from the ``plot_data()`` of its result and a title.

The probes compute their numbers; this module only draws them (plotly is
imported here, on first use, never by a probe) and knows nothing of the probes.
"""

from __future__ import annotations

import math
from typing import Any


def initial_loss_figure(data: dict[str, Any], title: str) -> Any:
    """Each head's measured value against its expected value, as grouped bars."""
    import plotly.graph_objects as go

    fig = go.Figure(
        [
            go.Bar(name="measured", x=data["names"], y=data["measured"]),
            go.Bar(name="expected", x=data["names"], y=data["expected"]),
        ]
    )
    fig.update_layout(
        title=title,
        barmode="group",
        yaxis_title="loss (or probability)",
    )
    return fig


def overfit_figure(data: dict[str, Any], title: str) -> Any:
    """Loss per step (log scale) above, batch accuracy below (classifiers)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = 2 if data["accuracy"] else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    fig.add_trace(
        go.Scatter(x=data["step"], y=data["loss"], name="loss", mode="lines"), row=1, col=1
    )
    if data["judged"]:
        fig.add_trace(
            go.Scatter(
                x=data["step"],
                y=data["judged"],
                name="loss judged (no soft-target terms)",
                mode="lines",
            ),
            row=1,
            col=1,
        )
    fig.update_yaxes(title_text="loss", type="log", row=1, col=1)
    if rows == 2:
        fig.add_trace(
            go.Scatter(x=data["step"], y=data["accuracy"], name="batch accuracy", mode="lines"),
            row=2,
            col=1,
        )
        fig.update_yaxes(title_text="accuracy", range=[0, 1.05], row=2, col=1)
    fig.update_xaxes(title_text="step", row=rows, col=1)
    fig.update_layout(title=title)
    return fig


def range_test_figure(data: dict[str, Any], title: str) -> Any:
    """Loss against LR (log axis), raw and smoothed, with the suggestion marked."""
    import plotly.graph_objects as go

    fig = go.Figure(
        [
            go.Scatter(x=data["lr"], y=data["loss"], name="loss", mode="lines", opacity=0.35),
            go.Scatter(x=data["lr"], y=data["smoothed"], name="smoothed loss", mode="lines"),
        ]
    )
    suggestion = data["suggestion"]
    if suggestion is not None:
        # A marker on the smoothed curve (a shape on a log axis would need
        # log10 coordinates, which plotly handles differently across versions).
        lrs = data["lr"]
        at = min(range(len(lrs)), key=lambda i: abs(math.log(lrs[i] / suggestion)))
        fig.add_trace(
            go.Scatter(
                x=[suggestion],
                y=[data["smoothed"][at]],
                name=f"suggestion {suggestion:.3g}",
                mode="markers",
                marker={"size": 12, "symbol": "circle-open", "line": {"width": 3}},
            )
        )
    finite = [s for s in data["smoothed"] if s is not None]
    # The raw loss can jump by orders of magnitude at the end of the sweep:
    # show the range where the smoothed curve lives.
    top = 1.5 * max([*finite[: max(1, len(finite) // 2)], min(finite) * 4]) if finite else None
    fig.update_layout(
        title=title,
        xaxis={"title": "learning rate", "type": "log"},
        yaxis={"title": "loss", "range": [0, top] if top else None},
    )
    return fig


def cross_check_figure(data: dict[str, Any], title: str) -> Any:
    """The loss curve of every short run, the chosen LR drawn thicker."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for lr, curve in zip(data["lr"], data["curves"]):
        chosen = lr == data["chosen"]
        fig.add_trace(
            go.Scatter(
                y=curve,
                name=f"lr {lr:.2g}" + (" (chosen)" if chosen else ""),
                mode="lines",
                line={"width": 3 if chosen else 1.2},
            )
        )
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="loss")
    return fig


def refine_figure(data: dict[str, Any], title: str) -> Any:
    """Each refinement run's score against its LR (log axis), the chosen LR marked."""
    import plotly.graph_objects as go

    fig = go.Figure(
        go.Scatter(x=data["lr"], y=data["score"], mode="lines+markers", name=data["judged_on"])
    )
    if data["chosen"] is not None:
        at = data["lr"].index(data["chosen"])
        fig.add_trace(
            go.Scatter(
                x=[data["chosen"]],
                y=[data["score"][at]],
                mode="markers",
                marker={"size": 14, "symbol": "star"},
                name="chosen",
            )
        )
    fig.update_layout(
        title=title,
        xaxis={"title": "peak learning rate (decayed to zero over the run)", "type": "log"},
        yaxis_title=data["judged_on"],
    )
    return fig


def update_ratio_figure(data: dict[str, Any], title: str) -> Any:
    """The ratio per weight tensor as bars (log axis), with the 1e-3 target and the band."""
    import plotly.graph_objects as go

    lo, hi = data["band"]
    fig = go.Figure(go.Bar(x=data["names"], y=data["ratios"], name="update/weight"))
    for y, name, dash in (
        (data["target"], "target 1e-3", "dash"),
        (lo, "band", "dot"),
        (hi, "band", "dot"),
    ):
        fig.add_trace(
            go.Scatter(
                x=[data["names"][0], data["names"][-1]] if data["names"] else [],
                y=[y, y],
                name=name,
                mode="lines",
                line={"dash": dash},
                showlegend=name != "band" or y == lo,
            )
        )
    fig.update_layout(
        title=title,
        yaxis={"type": "log", "title": "||Δw|| / ||w||"},
    )
    return fig
