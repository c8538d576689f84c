"""The figure of a study with scientific parameters, as He et al. draw theirs.

"Rethinking ImageNet Pre-training" compares detectors trained from scratch and
from a pretrained backbone by plotting AP against iterations, one curve per
schedule, with the end of each schedule marked; a reader sees whether the
scratch curve catches up when it trains longer. :func:`figure_data` computes
that figure for any study with cells: each cell's best trial against the
optimizer steps it took (its own metrics.jsonl), coloured by the scientific
values other than the schedule length, and, after a repeat stage, each cell's
final metric with its 95% interval. The data is plain values, tested on its
own; :func:`curves_figure` and :func:`finals_figure` draw it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunekit.report import read_records

#: The scientific parameter that is a schedule's length: its value is the curve's end mark.
LENGTH = "schedule.length_multiplier"
_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def _curve(run_dir: str | None, metric: str) -> tuple[list[float], list[float], list[float]]:
    """(steps, images seen, metric) of a run's evaluated epochs; empty when it left none."""
    steps: list[float] = []
    images: list[float] = []
    values: list[float] = []
    path = Path(run_dir) / "metrics.jsonl" if run_dir else None
    if path is None or not path.is_file():
        return steps, images, values
    records, _ = read_records(path)
    for rec in records:
        if rec["kind"] == "epoch" and metric in rec and "step" in rec:
            steps.append(float(rec["step"]))
            images.append(float(rec.get("images", float("nan"))))
            values.append(float(rec[metric]))
    return steps, images, values


def figure_data(
    cells: list[dict[str, Any]], repeats: list[dict[str, Any]], metric: str
) -> dict[str, Any] | None:
    """The figure's data from a study summary's ``cells`` and ``repeats``; None without cells.

    Each curve is a cell's best trial; its ``group`` is the cell's values other than the
    schedule length (``init=scratch``), which picks the colour, and ``length`` is the
    length multiplier, whose curve ends with a mark. ``finals`` come from the last repeat
    stage: each cell's mean with its 95% interval.
    """
    if len(cells) < 2:
        return None
    curves, groups = [], []
    for c in cells:
        values = dict(c.get("values") or {})
        length = values.pop(LENGTH, None)
        group = ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in sorted(values.items())) or "-"
        if group not in groups:
            groups.append(group)
        best = c.get("best") or {}
        steps, images, ys = _curve(best.get("run_dir"), metric)
        curves.append(
            {
                "cell": c["cell"],
                "group": group,
                "length": length,
                "trial": best.get("trial"),
                "stage": best.get("stage"),
                "steps": steps,
                "images": images,
                "values": ys,
                "end_step": steps[-1] if steps else None,
            }
        )
    finals = []
    if repeats:
        last = repeats[-1]
        for c in curves:
            r = last["cells"].get(c["cell"]) or {}
            if r.get("n"):
                finals.append(
                    {
                        "cell": c["cell"],
                        "group": c["group"],
                        "length": c["length"],
                        "mean": r["mean"],
                        "ci95": r.get("ci95"),
                        "n": r["n"],
                        "indistinguishable_from_best": r.get("indistinguishable_from_best"),
                    }
                )
    return {"metric": metric, "groups": groups, "curves": curves, "finals": finals}


def _colour(data: dict[str, Any], group: str) -> str:
    return _PALETTE[data["groups"].index(group) % len(_PALETTE)]


def curves_figure(data: dict[str, Any]) -> Any:
    """The metric against iterations, one line per cell, the end of each schedule marked."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for c in data["curves"]:
        if not c["steps"]:
            continue
        colour = _colour(data, c["group"])
        label = c["group"] if c["length"] is None else f"{c['group']} {c['length']}x"
        fig.add_trace(
            go.Scatter(
                x=c["steps"],
                y=c["values"],
                customdata=c["images"],
                mode="lines",
                name=label,
                line={"color": colour},
                hovertemplate="step %{x}<br>images %{customdata}<br>%{y:.4f}",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[c["end_step"]],
                y=[c["values"][-1]],
                mode="markers+text",
                marker={"color": colour, "size": 10, "symbol": "diamond"},
                text=[f"{c['length']}x" if c["length"] is not None else "end"],
                textposition="top center",
                showlegend=False,
                hoverinfo="skip",
            )
        )
    fig.update_layout(
        title=f"{data['metric']} against iterations: each cell's best trial, its schedule's "
        "end marked",
        xaxis_title="iterations (optimizer steps)",
        yaxis_title=data["metric"],
    )
    return fig


def finals_figure(data: dict[str, Any]) -> Any:
    """Each cell's final metric over the repeat's seeds, with its 95% interval."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for group in data["groups"]:
        rows = [f for f in data["finals"] if f["group"] == group]
        if not rows:
            continue
        x = [f"{f['length']}x" if f["length"] is not None else f["cell"] for f in rows]
        ci = [f["ci95"] or [f["mean"], f["mean"]] for f in rows]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[f["mean"] for f in rows],
                mode="markers+lines",
                name=group,
                marker={"color": _colour(data, group), "size": 9},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [hi - f["mean"] for f, (_, hi) in zip(rows, ci)],
                    "arrayminus": [f["mean"] - lo for f, (lo, _) in zip(rows, ci)],
                },
            )
        )
    fig.update_layout(
        title=f"final {data['metric']} per cell: mean and 95% interval over seeds",
        xaxis_title="schedule length",
        yaxis_title=data["metric"],
    )
    return fig
