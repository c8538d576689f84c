"""Bad study files and arguments: one clear line each, exit code 2, no traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tunekit.cli import main

SPACE = {"optim.lr": {"type": "log_uniform", "low": 0.01, "high": 0.5}}


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    rc = main(list(argv))
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tunekit: error: "), err
    return lines[0]


CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("unknown recipe", {"recipe": "nope"}, ["field 'recipe'", "unknown recipe 'nope'"]),
    (
        "empty range",
        {"space": {"optim.lr": {"type": "uniform", "low": 0.1, "high": 0.1}}},
        ["field 'space.optim.lr'", "empty range", "0.1"],
    ),
    (
        "inverted range",
        {"space": {"optim.lr": {"type": "uniform", "low": 0.5, "high": 0.1}}},
        ["field 'space.optim.lr'", "inverted range: low 0.5 > high 0.1"],
    ),
    (
        "log range including 0",
        {"space": {"optim.weight_decay": {"type": "log_uniform", "low": 0.0, "high": 0.1}}},
        ["field 'space.optim.weight_decay'", "log_uniform range must be above 0", "type: uniform"],
    ),
    (
        "pruner with invalid settings",
        {"stages": [{"name": "coarse", "pruner": {"name": "asha", "reduction_factor": 1}}]},
        ["field 'stages.0.pruner'", "reduction_factor must be 2 or more, got 1"],
    ),
    (
        "unknown pruner",
        {"stages": [{"name": "coarse", "pruner": {"name": "meadian"}}]},
        ["field 'stages.0.pruner.name'", "'meadian'", "median"],
    ),
    (
        "parameter that is not a recipe field",
        {"space": {"optim.lrr": {"type": "log_uniform", "low": 0.01, "high": 0.5}}},
        ["field 'space.optim.lrr'", "unknown key (did you mean 'lr'?)"],
    ),
    (
        "range the recipe refuses",
        {"space": {"optim.momentum": {"type": "uniform", "low": 0.5, "high": 1.5}}},
        ["field 'space.optim.momentum'", "does not validate", "1.5"],
    ),
    (
        "refine on the first stage",
        {"stages": [{"name": "coarse", "refine": {"top_k": 2}}]},
        ["first stage has no earlier stage to refine"],
    ),
    (
        "pruner on an average the stage does not keep",
        {"stages": [{"name": "coarse", "pruner": {"name": "median", "metric": "ema/val/top1"}}]},
        ["field 'stages.coarse.pruner.metric'", "'ema/val/top1'", "no averaging.ema"],
    ),
    (
        "misspelt pruner metric",
        {"stages": [{"name": "coarse", "pruner": {"name": "median", "metric": "val/top01"}}]},
        ["field 'stages.coarse.pruner.metric'", "'val/top01'", "did you mean 'val/top1'"],
    ),
    (
        "misspelt study metric",
        {"metric": "val/accuracy"},
        ["field 'metric'", "'val/accuracy'", "gives val/loss, val/top1, val/top5"],
    ),
    (
        "unknown study key",
        {"stagess": []},
        ["field 'stagess'", "did you mean 'stages'"],
    ),
]


@pytest.mark.parametrize(("case", "fields", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_study_file(
    case: str,
    fields: dict[str, Any],
    expected: list[str],
    write_study: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    path = write_study("bad.yaml", **fields)
    line = _error(
        capsys, "search", "--study", str(path), "--out", str(tmp_path / "o"), "--no-progress"
    )
    assert str(path) in line
    for part in expected:
        assert part in line, line
    assert not (tmp_path / "o").exists()  # nothing was started


def test_unreachable_storage_url(
    write_study: Callable[..., Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_study()
    url = "postgresql+psycopg2://tunekit:secret@127.0.0.1:1/nowhere"
    line = _error(
        capsys, "search", "--study", str(path), "--storage", url, "--out", str(tmp_path / "o")
    )
    assert "field '--storage'" in line and "cannot open storage" in line
    assert "secret" not in line and "tunekit:***@127.0.0.1:1/nowhere" in line
    assert "Connection refused" in line or "connection" in line.lower()


def test_unknown_study_name_and_bad_overrides(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    line = _error(capsys, "search", "--study", "digitz")
    assert "no study named 'digitz' (did you mean 'digits'?)" in line and "known studies:" in line
    line = _error(
        capsys,
        "search",
        "--study",
        "digits",
        "--set",
        "stages.coarse.trials=0",
        "--out",
        str(tmp_path),
    )
    assert "field 'stages.0.trials'" in line and "greater than 0" in line
    line = _error(capsys, "search", "--study", "digits", "--workers", "0", "--out", str(tmp_path))
    assert "--workers" in line


def test_from_sanity_sets_the_coarse_ranges(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from tunekit.search import open_search

    sanity = tmp_path / "sanity.json"
    sanity.write_text(
        json.dumps(
            {
                "lr": {"chosen": 0.1},
                "search_space": {"lr": [0.01, 1.0], "weight_decay": [1e-5, 1e-3]},
            }
        )
    )
    ctx = open_search("digits", out=tmp_path / "s", from_sanity=str(sanity))
    assert (ctx.search.base_space["optim.lr"].low, ctx.search.base_space["optim.lr"].high) == (
        0.01,
        1.0,
    )
    assert ctx.search.base_space["optim.weight_decay"].high == 1e-3
    sanity.write_text(json.dumps({"search_space": {"weight_decay": [0.0, 1e-3]}}))
    line = _error(
        capsys,
        "search",
        "--study",
        "digits",
        "--from-sanity",
        str(sanity),
        "--out",
        str(tmp_path / "t"),
    )
    assert "search_space.weight_decay" in line and "0 < low < high" in line


def test_cli_in_a_subprocess_prints_one_line(
    cli: Callable[..., Any], write_study: Callable[..., Path]
) -> None:
    path = write_study("bad.yaml", space={"optim.lr": {"type": "log_uniform", "low": 0, "high": 1}})
    proc = cli("search", "--study", str(path))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "must be above 0" in proc.stderr
