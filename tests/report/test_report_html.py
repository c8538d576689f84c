"""The run report: its data as plain values, the HTML rendered in headless Chromium, the CLI."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from report_helpers import N, write_run

from tunekit.cli import main
from tunekit.report import load_run, moving_average, report_data, write_report
from tunekit.testing import chromium_dom


def test_moving_average_skips_non_finite_points() -> None:
    assert moving_average([1.0, 3.0, math.nan, 5.0, 7.0], 2) == [1.0, 2.0, 2.0, 4.0, 6.0]
    assert math.isnan(moving_average([math.inf, 1.0], 3)[0])


def test_report_data_from_a_run(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run")
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write('{"kind": "step", "step": 5, "train/st')  # a line cut by a kill
    data = report_data(load_run(run_dir))
    assert data.title.endswith("synthetic") and data.notes == [
        "1 unreadable line(s) in metrics.jsonl were skipped"
    ]
    assert len(data.loss.losses) == N and data.loss.window == 30
    assert data.loss.moving_average[29] == pytest.approx(sum(data.loss.losses[:30]) / 30)
    assert data.loss.epoch_val.x == [
        float(s) for s in range(60, N + 1, 60)
    ]  # at the step each epoch ended
    assert [s.name for s in data.metrics] == ["val/top1"]
    assert data.heatmap.layers == ["stem.0", "layer1.conv1", "fc"]
    assert data.heatmap.steps == [float(s) for s in range(20, N + 1, 20)]
    assert data.heatmap.z[2][0] == pytest.approx(math.log10(1e-4 * (1 + 0.1 * math.sin(19))))
    assert data.band.low[0] == pytest.approx(10 ** data.heatmap.z[2][0])
    assert data.band.high[0] == pytest.approx(10 ** data.heatmap.z[0][0])
    assert [s.name for s in data.grads.layers] == ["stem.0", "layer1.conv1", "fc"] and len(
        data.grads.total.x
    ) == N
    assert set(data.activations.stats) == {"mean", "std", "dead"}
    assert data.activations.stats["dead"][0].x == [100.0, 200.0, 300.0, 400.0, 500.0, 600.0]
    assert [(e.step, e.event, e.level) for e in data.events] == [
        (153, "loss_spike", "info"),
        (300, "ratio_warning", "warning"),
    ]
    assert data.verdicts == []


def test_zero_ratio_layers_are_kept_apart(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(
        '{"kind": "step", "step": 1, "update_ratio/a": 0.0, "update_ratio/b": 0.001}\n'
        '{"kind": "step", "step": 2, "update_ratio/a": 0.0, "update_ratio/b": NaN}\n'
    )
    data = report_data(load_run(run_dir))
    assert data.heatmap.z == [[None, None], [pytest.approx(-3.0), None]]
    assert data.heatmap.zero_layers == ["a"] and data.notes == [
        "ratio exactly 0 (not trained) for: a"
    ]


def test_html_report_renders_every_plot_in_headless_chromium(tmp_path: Path) -> None:
    path = write_report(write_run(tmp_path / "run"))
    assert path == tmp_path / "run" / "report.html"
    text = path.read_text()
    from plotly.offline import get_plotlyjs

    assert text.count(get_plotlyjs()) == 1  # plotly.js is inlined once: the file opens offline
    assert "&lt;b&gt;" in text  # event messages are escaped
    dom = chromium_dom(path)
    for div in ("loss", "metrics", "lr", "ratios", "ratio-band", "grads", "activations"):
        match = re.search(rf'<div id="{div}"[^>]*class="[^"]*js-plotly-plot[^"]*"', dom)
        assert match, f"plot {div!r} did not render"
    assert dom.count('class="main-svg"') >= 14  # two svg layers per rendered plot
    assert "heatmap" in dom  # the ratio heatmap's trace was drawn


def test_report_and_diagnose_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = write_run(tmp_path / "run")
    out = tmp_path / "elsewhere" / "r.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    assert out.is_file() and f"report: {out}" in capsys.readouterr().out
    assert main(["diagnose", str(run_dir)]) == 0
    assert "nothing wrong in the curves" in capsys.readouterr().out
    assert main(["diagnose", str(run_dir), "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report"], "give a run directory (RUN_DIR) or --study NAME"),
        (["report", "{tmp}/missing"], "{tmp}/missing: no such run directory"),
        (["report", "{tmp}"], "{tmp}: no metrics.jsonl in this directory"),
        (["report", "{tmp}", "--compare", "x"], "--compare and --storage go with --study"),
        (["diagnose", "{tmp}/missing"], "{tmp}/missing: no such run directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("tunekit: error:")
        and message.format(tmp=tmp_path) in err
        and "\n" not in err
    )
