"""Study dashboards: one self-contained HTML file, TensorBoard hparams, optuna-dashboard.

The report's data is computed first as plain values (:func:`study_report_data`)
and rendered after: Optuna's own plots (optimisation history, parallel
coordinates, slices, importances, intermediate values) for each stage, the
learning curve of every trial from its ``metrics.jsonl``, the stages with
their ranges and edge flags, and the pruned trials with the optimizer step
they stopped at. A plot that cannot be drawn (too few trials) is replaced by a
line saying why; the report never fails for it.
"""

from __future__ import annotations

import html
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from tunekit.errors import TunekitError
from tunekit.report import (
    Series,
    StepAxis,
    figure_html,
    html_page,
    label_steps,
    read_records,
    step_axis,
    step_hover,
    write_text_file,
)

from ._figure import curves_figure, figure_data, finals_figure
from ._space import recipe_values
from ._stages import StagedSearch, summary_data


def read_curve(run_dir: str | None, metric: str) -> dict[str, list[float]]:
    """A trial's per-epoch ``metric`` and training loss from its metrics.jsonl (bad records
    skipped), each at its optimizer step, epoch and images seen (NaN in older records)."""
    out: dict[str, list[float]] = {
        "step": [],
        "epoch": [],
        "images": [],
        "metric": [],
        "train_loss": [],
    }
    if not run_dir:
        return out
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return out
    records, _ = read_records(path)  # a line cut short by a killed worker, an edit gone wrong
    for rec in records:
        if rec["kind"] != "epoch" or metric not in rec:
            continue
        out["step"].append(float(rec["step"]))
        out["epoch"].append(rec["epoch"])
        out["images"].append(rec.get("images", math.nan))
        out["metric"].append(rec[metric])
        out["train_loss"].append(rec.get("train/loss", math.nan))
    return out


def study_report_data(search: StagedSearch) -> dict[str, Any]:
    """Everything the report shows, as plain values (with the summary's per-cell bests and
    repeat statistics)."""
    study = search.study
    summary = summary_data(search, Path("."), "")
    trials = []
    for unit, t in search.all_trials():
        run_dir = t.user_attrs.get("run_dir")
        trials.append(
            {
                "stage": unit.name,
                "cell": unit.cell.key,
                "trial": t.number,
                "state": t.state.name,
                "params": recipe_values(t.params),
                "value": t.value,
                "intermediate": {int(k): float(v) for k, v in t.intermediate_values.items()},
                "pruned_at": max(t.intermediate_values)
                if t.state == TrialState.PRUNED and t.intermediate_values
                else None,
                "reason": t.user_attrs.get("failure_reason"),
                "run_dir": run_dir,
                "curve": read_curve(run_dir, study.metric),
            }
        )
    return {
        "study": study.name,
        "metric": study.metric,
        "direction": study.direction,
        "roles": {k: v.role for k, v in study.space.items()},
        "stages": summary["stages"],
        "trials": trials,
        "cells": summary["cells"],
        "repeats": summary["repeats"],
        "figure": figure_data(summary["cells"], summary["repeats"], study.metric),
    }


# -- rendering ---------------------------------------------------------------------------------


def _fig_html(fig: Any) -> str:
    return figure_html(fig, default_height="420px")


def _optuna_plots(search: StagedSearch) -> list[tuple[str, str]]:
    """(title, html) of Optuna's plots for each stage that has trials."""
    import optuna.visualization as vis

    sections = []
    for st in search.all_units():
        s = search.existing(st)
        if s is None or not s.get_trials(deepcopy=False):
            continue
        for title, fn in (
            ("optimisation history", vis.plot_optimization_history),
            ("intermediate values (pruned trials stop early)", vis.plot_intermediate_values),
            ("parallel coordinates", vis.plot_parallel_coordinate),
            ("slices", vis.plot_slice),
            ("parameter importances", vis.plot_param_importances),
        ):
            name = f"{st.label}: {title}"
            try:
                with warnings.catch_warnings():
                    # "too few trials for importances": the plot says so itself.
                    warnings.simplefilter("ignore")
                    sections.append((name, _fig_html(fn(s))))
            except Exception as exc:  # too few trials, one parameter, ...: say so, go on
                sections.append((name, f"<p class=note>not drawn: {html.escape(str(exc))}</p>"))
    return sections


def curve_series(curve: dict[str, list[float]], name: str = "") -> Series:
    """A trial's curve (:func:`read_curve`) as a run report's :class:`Series` against steps."""
    return Series(
        name,
        list(curve.get("step", [])),
        list(curve["metric"]),
        list(curve["epoch"]),
        list(curve.get("images", [])),
    )


def curves_axis(data: dict[str, Any], compare: dict[str, Any] | None = None) -> StepAxis:
    """What the steps of every trial's curve (of both studies) mean in epochs and images."""
    studies = [data, *([compare] if compare else [])]
    return step_axis([curve_series(t["curve"]) for d in studies for t in d["trials"]])


def _curves_figure(data: dict[str, Any], compare: dict[str, Any] | None) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    for k, d in enumerate([data, *([compare] if compare else [])]):
        stage_names = [s["name"] for s in d["stages"]]
        for t in d["trials"]:
            s = curve_series(t["curve"], f"{d['study']} {t['stage']} #{t['trial']}")
            if not s.x:
                continue
            colour = palette[(stage_names.index(t["stage"]) + 3 * k) % len(palette)]
            fig.add_trace(
                go.Scatter(
                    x=s.x,
                    y=s.y,
                    mode="lines+markers",
                    name=f"{s.name} ({t['state'].lower()})",
                    line={"color": colour, "dash": "dot" if t["state"] == "PRUNED" else "solid"},
                    opacity=0.8,
                    **step_hover(s),
                )
            )
    fig.update_layout(
        title=f"learning curves: {data['metric']} against optimizer steps",
        yaxis_title=data["metric"],
    )
    label_steps(fig, curves_axis(data, compare))
    return fig


def metric_by_steps(data: dict[str, Any]) -> dict[int, tuple[float, float]]:
    """The best metric a study reached for each training length: the optimizer steps a
    complete trial ran, to (its best value, the images it had seen; NaN if not recorded).

    Steps, not epochs: the epochs of two studies (or of a 1x and a 6x schedule) hold
    different numbers of iterations.
    """
    sign = 1.0 if data["direction"] == "maximize" else -1.0
    best: dict[int, tuple[float, float]] = {}
    for t in data["trials"]:
        c = t["curve"]
        if t["state"] != "COMPLETE" or not c.get("step"):
            continue
        last = max(range(len(c["step"])), key=lambda i: c["step"][i])
        steps = int(c["step"][last])
        value = max(c["metric"], key=lambda v: sign * v)
        if steps not in best or sign * value > sign * best[steps][0]:
            best[steps] = (value, c.get("images", [math.nan] * (last + 1))[last])
    return dict(sorted(best.items()))


def _comparison_figure(data: dict[str, Any], compare: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for d in (data, compare):
        points = metric_by_steps(d)
        fig.add_trace(
            go.Scatter(
                x=list(points),
                y=[v for v, _ in points.values()],
                customdata=[i for _, i in points.values()],
                hovertemplate="%{x} steps<br>%{customdata:,.0f} images<br>%{y:.4g}",
                mode="lines+markers",
                name=d["study"],
            )
        )
    fig.update_layout(
        title=f"best {data['metric']} against training length",
        xaxis_title="optimizer steps of the trial",
        yaxis_title=data["metric"],
    )
    return fig


def _stage_row(s: dict[str, Any]) -> str:
    """One table row: a stage, or one cell of it (named ``stage cell``)."""
    ranges = "<br>".join(
        f"{html.escape(k)}: {html.escape(_range_text(v))}" for k, v in s["ranges"].items()
    )
    flags = "<br>".join(html.escape(f) for f in s["edge_flags"]) or "-"
    c = s["counts"]
    noise = s.get("noise")
    tied = (
        f"{len(noise['trials'])} (±{2 * noise['se']:.4f} on {noise['val_size']} items)"
        if noise
        else "-"
    )
    name = f"{s['name']} {s['cell']}" if s.get("cell") else s["name"]
    return (
        f"<tr><td>{html.escape(name)}</td><td>{s['sampler']}</td><td>{s['pruner']}</td>"
        f"<td>{s['epochs']}{_steps_text(s)}</td><td>{s['trials_planned']}</td><td>{c['complete']}</td>"
        f"<td>{c['pruned']}</td><td>{c['failed']}</td><td>{tied}</td><td>{ranges}</td>"
        f"<td>{flags}</td></tr>"
    )


def _stages_table(data: dict[str, Any]) -> str:
    rows = []
    for stage in data["stages"]:
        cells = stage.get("cells") or []
        for s in [stage] if len(cells) < 2 else [{**stage, **c} for c in cells]:
            rows.append(_stage_row(s))
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "stage",
            "sampler",
            "pruner",
            "epochs (steps)",
            "planned",
            "complete",
            "pruned",
            "failed",
            "within 2 SE of the best",
            "ranges",
            "edge flags",
        )
    )
    return f"<table class=stages><tr>{head}</tr>{''.join(rows)}</table>"


def _cells_table(data: dict[str, Any]) -> str:
    """Each cell's best trial, and each repeat stage's mean ± 95% interval (empty without cells
    or repeats)."""
    cells = data.get("cells") or []
    repeats = data.get("repeats") or []
    if len(cells) < 2 and not repeats:
        return ""
    head = ["cell", "best", "stage", "trial"]
    for rep in repeats:
        head += [f"{rep['stage']}: mean ± 95% CI (n)", "vs the best cell"]
    rows = []
    for c in cells:
        b = c["best"]
        tds = [html.escape(c["cell"] or "-")]
        tds += [f"{b['value']:.4f}", html.escape(b["stage"]), str(b["trial"])] if b else ["-"] * 3
        for rep in repeats:
            r = rep["cells"].get(c["cell"], {})
            if r.get("ci95"):
                lo, hi = r["ci95"]
                tds.append(f"{r['mean']:.4f} ± {(hi - lo) / 2:.4f} ({r['n']})")
            else:
                tds.append("-")
            same = r.get("indistinguishable_from_best")
            tds.append(
                "best"
                if c["cell"] == rep["best_cell"]
                else "-"
                if same is None
                else f"{'indistinguishable' if same else 'worse'} (p={r['p_vs_best']:.3g})"
            )
        rows.append("<tr>" + "".join(f"<td>{t}</td>" for t in tds) + "</tr>")
    notes = "".join(f"<p class=note>{html.escape(rep['rule'])}</p>" for rep in repeats)
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<h2>cells</h2><table class=cells><tr>{th}</tr>{''.join(rows)}</table>{notes}"


def _pruned_table(data: dict[str, Any]) -> str:
    rows = [
        f"<tr><td>{html.escape(t['stage'])}</td><td>{t['trial']}</td><td>{t['state'].lower()}</td>"
        f"<td>{t['pruned_at'] if t['pruned_at'] is not None else '-'}</td>"
        f"<td>{html.escape(t['reason'] or '')}</td></tr>"
        for t in data["trials"]
        if t["state"] in ("PRUNED", "FAIL")
    ]
    if not rows:
        return "<p class=note>no trial was pruned or failed.</p>"
    return (
        "<table class=pruned><tr><th>stage</th><th>trial</th><th>state</th><th>stopped at step</th>"
        f"<th>reason</th></tr>{''.join(rows)}</table>"
    )


def _steps_text(stage: dict[str, Any]) -> str:
    return f" (cut at {stage['steps']})" if stage.get("steps") else ""


def _range_text(r: dict[str, Any]) -> str:
    if r.get("choices") is not None:
        return "{" + ", ".join(str(c) for c in r["choices"]) + "}"
    log = "log " if r.get("type") == "log_uniform" else ""
    return f"{log}[{r['low']:.4g}, {r['high']:.4g}] ({r.get('role', '')})"


def render_report(
    data: dict[str, Any], plots: list[tuple[str, str]], compare: dict[str, Any] | None
) -> str:
    """The whole HTML page (plotly.js inlined once, so the file works offline)."""
    title = f"study {data['study']}" + (f" vs {compare['study']}" if compare else "")
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>objective: {html.escape(data['metric'])} ({data['direction']})</p>",
        "<h2>stages and their ranges</h2>",
        _stages_table(data),
        _cells_table(data),
    ]
    figure = data.get("figure")
    if figure is not None:
        parts += ["<h2>scientific comparison</h2>", _fig_html(curves_figure(figure))]
        if figure["finals"]:
            parts.append(_fig_html(finals_figure(figure)))
    if compare:
        parts += [
            f"<h2>compared study: {html.escape(compare['study'])}</h2>",
            _stages_table(compare),
            f"<h2>{html.escape(data['study'])} vs {html.escape(compare['study'])}</h2>",
            _fig_html(_comparison_figure(data, compare)),
        ]
    parts += [
        "<h2>learning curves of every trial</h2>",
        _fig_html(_curves_figure(data, compare)),
        "<h2>pruned and failed trials</h2>",
        _pruned_table(data),
    ]
    for name, body in plots:
        parts += [f"<h2>{html.escape(name)}</h2>", body]
    return html_page(title, "".join(parts))


def _open(study: str, out: str | None, storage: str | None) -> tuple[StagedSearch, Path]:
    from ._validate import open_search

    study_dir = out
    if out is not None and out.endswith(".html"):
        study_dir = None
    if study_dir is None and os.path.isdir(study) and (Path(study) / "summary.json").is_file():
        study_dir = study
        study = _study_name(Path(study) / "summary.json")
    ctx = open_search(study, out=study_dir, storage=storage, create=False)
    return ctx.search, ctx.study_dir


def _study_name(path: Path) -> str:
    """The study a study directory's summary.json names (a file that does not is one line)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not JSON"
        data, problem = None, reason
    else:
        problem = "no 'study' name in it"
    name = data.get("study") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        raise TunekitError(
            f"cannot tell which study this directory holds ({problem}); give the study's name "
            f"or file with --study and this directory with --out {path.parent}",
            file=str(path),
        )
    return name


def study_report(
    study: str, out: str | None = None, compare: str | None = None, storage: str | None = None
) -> Path:
    """Writes a study's dashboard as one self-contained HTML file and returns its path.

    ``study`` is a study name or path (or a study directory); ``out`` is the
    study directory (as given to ``tunekit search --out``) or the ``.html``
    file to write (default ``<study dir>/report.html``); ``compare`` is another
    study (name, path or directory) shown side by side.

    Example:
        >>> study_report("digits", out="runs/search/digits")  # doctest: +SKIP
        PosixPath('runs/search/digits/report.html')
    """
    search, study_dir = _open(study, out, storage)
    data = study_report_data(search)
    other = None
    if compare:
        other_search, _ = _open(compare, None, None)
        other = study_report_data(other_search)
    page = render_report(data, _optuna_plots(search), other)
    target = Path(out) if out is not None and out.endswith(".html") else study_dir / "report.html"
    return write_text_file(target, page)


def write_hparams(search: StagedSearch, directory: Path) -> int:
    """Writes TensorBoard hparams (parameters and final metric) for every finished trial.

    The directory is rewritten from the storage each time, so re-running a
    study never duplicates runs. Returns the number of trials written.
    """
    import shutil

    from torch.utils.tensorboard import SummaryWriter

    if directory.exists():
        shutil.rmtree(directory)
    n = 0
    metric = search.study.metric
    for st in search.all_units():
        for t in search.trials(st):
            if t.state not in (TrialState.COMPLETE, TrialState.PRUNED) or t.value is None:
                continue
            epochs = search.training_unit(st).spec.epochs
            hparams: dict[str, Any] = {"stage": st.name, "epochs": epochs}
            steps = search.training_unit(st).spec.steps
            if steps is not None:
                hparams["steps"] = steps
            for k, v in recipe_values(t.params).items():
                hparams[k] = v if isinstance(v, (int, float, str, bool)) else str(v)
            cell = f"-{st.dir_name}" if st.dir_name else ""
            run = f"{st.name}{cell}-trial-{t.number:04d}"
            with SummaryWriter(log_dir=str(directory / run)) as w:
                w.add_hparams(hparams, {f"hparam/{metric}": float(t.value)}, run_name=".")
            n += 1
    return n
