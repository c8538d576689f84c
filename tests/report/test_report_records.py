"""A record stream edited by hand: bad records are skipped and counted, never a traceback."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest
from report_helpers import N, curves, healthy_loss, write_run

from tunekit.cli import main
from tunekit.report import diagnose, load_run, report_data

REPO = Path(__file__).resolve().parents[2]

BAD_LINES = {
    "step null": '{"kind": "step", "step": null, "train/step_loss": 1.0}',
    "step a string": '{"kind": "step", "step": "7", "train/step_loss": 1.0}',
    "step a bool": '{"kind": "step", "step": true, "train/step_loss": 1.0}',
    "step negative": '{"kind": "step", "step": -3, "train/step_loss": 1.0}',
    "step a fraction": '{"kind": "step", "step": 2.5, "train/step_loss": 1.0}',
    "step infinite": '{"kind": "step", "step": 1e400, "train/step_loss": 1.0}',
    "step NaN": '{"kind": "step", "step": NaN, "train/step_loss": 1.0}',
    "step too big for a float": '{"kind": "step", "step": ' + "9" * 400 + "}",
    "no step": '{"kind": "step", "train/step_loss": 1.0}',
    "value a string": '{"kind": "step", "step": 7, "train/step_loss": "0.5"}',
    "value null": '{"kind": "step", "step": 7, "lr": null}',
    "value too big for a float": '{"kind": "step", "step": 7, "lr": ' + "9" * 400 + "}",
    "nested garbage": '{"kind": "epoch", "epoch": 3, "step": 180, "val/top1": {"a": [1, {"b": []}]}}',
    "epoch missing": '{"kind": "epoch", "step": 180, "val/top1": 0.5}',
    "epoch a string": '{"kind": "epoch", "epoch": "3", "step": 180, "val/top1": 0.5}',
    "event epoch null": '{"kind": "event", "step": 3, "epoch": null, "event": "x", "message": "m"}',
    "event step a list": '{"kind": "event", "step": [3], "event": "x", "message": "m"}',
    "kind unknown": '{"kind": "stepp", "step": 3}',
    "kind a number": '{"kind": 5, "step": 3}',
    "a list": "[1, 2, 3]",
    "a string": '"step"',
    "a number": "42",
    "null": "null",
    "deep nesting": "[" * 100_000,
    "cut by a kill": '{"kind": "step", "step": 5, "train/st',
    "a huge line": '{"kind": "step", "step": 9, "note": "' + "x" * 2_000_000 + '"}',
}


@pytest.mark.parametrize("line", list(BAD_LINES.values()), ids=list(BAD_LINES))
def test_a_bad_record_is_skipped_and_counted(line: str, tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run")
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write(line + "\n")
    run = load_run(run_dir)
    assert run.skipped_lines == 1
    data = report_data(run)
    assert len(data.loss.losses) == N and data.verdicts == []
    assert diagnose(run_dir) == []


def test_bad_records_are_said_once_with_their_count_and_reasons(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = write_run(tmp_path / "run")
    text = (run_dir / "metrics.jsonl").read_text().splitlines()
    text.insert(3, BAD_LINES["step null"])
    text.insert(10, BAD_LINES["value a string"])
    text.append(BAD_LINES["cut by a kill"])
    (run_dir / "metrics.jsonl").write_text("\n".join(text) + "\n")
    with caplog.at_level(logging.WARNING, logger="tunekit.report"):
        load_run(run_dir)
    (message,) = [r.getMessage() for r in caplog.records if r.name == "tunekit.report"]
    assert message == (
        f"{run_dir / 'metrics.jsonl'}: 3 bad records skipped (1 with step null, "
        "1 with a non-numeric 'train/step_loss', 1 not JSON), the first at line 4"
    )


def test_non_finite_values_are_kept_as_the_divergence_they_show(tmp_path: Path) -> None:
    c = curves(healthy_loss)
    c.loss[400] = math.nan
    run_dir = write_run(tmp_path / "run", c)
    run = load_run(run_dir)
    assert run.skipped_lines == 0
    assert report_data(run).loss.non_finite_steps == [401.0]
    assert [v.code for v in diagnose(run_dir)] == ["diverging"]


def test_not_utf8_is_a_bad_record(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run")
    with (run_dir / "metrics.jsonl").open("ab") as f:
        f.write(b'{"kind": "event", "step": 3, "message": "\xff\xfe"}\n')
    assert load_run(run_dir).skipped_lines == 1


def test_the_commands_on_a_stream_with_bad_records_exit_0_and_say_the_count(
    tmp_path: Path,
) -> None:
    run_dir = write_run(tmp_path / "run")
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write(BAD_LINES["step null"] + "\n" + BAD_LINES["a list"] + "\n")
    for command in (["diagnose", str(run_dir), "--json"], ["report", str(run_dir)]):
        proc = subprocess.run(
            [sys.executable, "-m", "tunekit", *command],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.count("2 bad records skipped") == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        if command[0] == "diagnose":
            assert json.loads(proc.stdout) == []  # stdout stays the verdicts alone


def test_an_empty_stream_is_one_line_for_diagnose_and_an_empty_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("")
    assert main(["diagnose", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"tunekit: error: {run_dir / 'metrics.jsonl'}: no step or epoch records to read "
        "(the run has not finished a step yet)"
    )
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.html").is_file()
