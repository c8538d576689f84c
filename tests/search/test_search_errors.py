"""Bad study files and arguments: one clear line each, exit code 2, no traceback."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from search_helpers import assert_bad_study, one_line_error

SPACE = {"optim.lr": {"type": "log_uniform", "low": 0.01, "high": 0.5}}


CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("unknown recipe", {"recipe": "nope"}, ["field 'recipe'", "unknown recipe 'nope'"]),
    (
        "empty range",
        {"space": {"optim.lr": {"type": "uniform", "low": 0.1, "high": 0.1}}},
        ["field 'space.optim.lr'", "empty range: low and high are both 0.1", "role: fixed"],
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
        [
            "field 'stages.coarse.pruner.reduction_factor'",
            "reduction_factor must be 2 or more, got 1",
        ],
    ),
    (
        "unknown pruner",
        {"stages": [{"name": "coarse", "pruner": {"name": "meadian"}}]},
        ["field 'stages.coarse.pruner.name'", "got 'meadian' (did you mean 'median'?)"],
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
        ["field 'stages.coarse.refine'", "first stage has no earlier stage to refine"],
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
    (
        # Before, the two stages loaded as one, and the message spoke of refining.
        "stage name used twice",
        {
            "stages": [
                {"name": "coarse", "trials": 4},
                {"name": "coarse", "trials": 2, "refine": {"top_k": 2}},
            ]
        },
        ["field 'stages.1.name'", "stage 1 is named 'coarse' like stage 0", "its own name"],
    ),
    (
        "stage without a name",
        {"stages": [{"trials": 4}]},
        ["field 'stages.0.name'", "missing: every stage needs a name", "name: coarse"],
    ),
    (
        "stage name with a space",
        {"stages": [{"name": "first try"}]},
        ["field 'stages.0.name'", "'first try' is not allowed: use only letters, digits"],
    ),
    (
        "no stages",
        {"stages": []},
        ["field 'stages'", "needs at least 1 item, got 0", "at least one stage"],
    ),
    (
        "empty stages",
        {"stages": None},
        ["field 'stages'", "expected a list, got nothing (an empty value)"],
    ),
    (
        "every parameter fixed",
        {"space": {"optim.lr": {"role": "fixed", "value": 0.1}}},
        ["field 'space'", "every parameter is fixed, so there is nothing to search"],
    ),
    (
        "infinite range",
        {"space": {"optim.lr": {"type": "uniform", "low": 0.01, "high": float("inf")}}},
        ["field 'space.optim.lr.high'", "expected a finite number, got inf"],
    ),
    (
        "nan hard limit",
        {"space": {"optim.lr": {"type": "uniform", "low": 0.01, "high": 1, "max": float("nan")}}},
        ["field 'space.optim.lr.max'", "expected a finite number, got nan"],
    ),
    (
        "infinite time budget",
        {"rounds": {"time_budget_s": float("inf")}},
        ["field 'rounds.time_budget_s'", "expected a finite number, got inf"],
    ),
    (
        "trials beyond any budget",
        {"stages": [{"name": "coarse", "trials": 10**9}]},
        [
            "field 'stages.coarse.trials'",
            "value 1000000000 is not allowed: it must be at most 1000000",
        ],
    ),
    (
        "epochs beyond any budget",
        {"stages": [{"name": "coarse", "epochs": 10**7}]},
        ["field 'stages.coarse.epochs'", "must be at most 100000"],
    ),
    (
        "seed numpy cannot take",
        {"seed": 2**40},
        ["field 'seed'", "must be at most 4000000"],
    ),
    (
        "negative seed",
        {"seed": -1},
        ["field 'seed'", "value -1 is not allowed: it must be at least 0"],
    ),
    (
        "boolean trial count",
        {"stages": [{"name": "coarse", "trials": True}]},
        ["field 'stages.coarse.trials'", "expected a number, got true"],
    ),
    (
        "grace shorter than heartbeat",
        {"liveness": {"heartbeat_s": 5, "grace_s": 1}},
        ["field 'liveness.grace_s'", "must be longer than heartbeat_s 5.0"],
    ),
    (
        # Before, this was reported as a --set on the command line, at the first trial check.
        "study override without a value",
        {"set": ["optim.lr"]},
        ["field 'set.0'", "override 'optim.lr' must look like 'section.field=value'"],
    ),
    (
        "stage override with a deep value",
        {"stages": [{"name": "coarse", "set": ["model.kwargs=" + "[" * 200 + "]" * 200]}]},
        ["field 'stages.coarse.set.0'", "nesting deeper than 64 levels"],
    ),
    (
        "name of the parent directory",
        {"name": ".."},
        ["field 'name'", "'..' would name the output directory itself or its parent"],
    ),
    (
        "missing recipe",
        {"recipe": None},
        ["field 'recipe'", "a study needs what its trials run", 'objective: "mypkg.train:fn"'],
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
    assert_bad_study(capsys, write_study, tmp_path, fields, expected)


def test_unreachable_storage_url(
    write_study: Callable[..., Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_study()
    url = "postgresql+psycopg2://tunekit:secret@127.0.0.1:1/nowhere"
    line = one_line_error(
        capsys, "search", "--study", str(path), "--storage", url, "--out", str(tmp_path / "o")
    )
    assert "field '--storage'" in line and "cannot open storage" in line
    assert "secret" not in line and "tunekit:***@127.0.0.1:1/nowhere" in line
    assert "Connection refused" in line or "connection" in line.lower()


def test_unknown_study_name_and_bad_overrides(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    line = one_line_error(capsys, "search", "--study", "digitz")
    assert "no study named 'digitz' (did you mean 'digits'?)" in line and "known studies:" in line
    line = one_line_error(
        capsys,
        "search",
        "--study",
        "digits",
        "--set",
        "stages.coarse.trials=0",
        "--out",
        str(tmp_path),
    )
    assert (
        "field 'stages.coarse.trials'" in line
        and "value 0 is not allowed: it must be greater than 0" in line
    )
    line = one_line_error(
        capsys,
        "search",
        "--study",
        "digits",
        "--set",
        "stages.coarze.trials=3",
        "--out",
        str(tmp_path),
    )
    # Before, an unknown stage name added a stage with no name.
    assert "field '--set'" in line and "no stage named 'coarze' (did you mean 'coarse'?)" in line
    line = one_line_error(
        capsys, "search", "--study", "digits", "--set", "seed=.nan", "--out", str(tmp_path)
    )
    assert "field 'seed'" in line and "expected a finite number, got nan" in line
    line = one_line_error(
        capsys, "search", "--study", "digits", "--workers", "0", "--out", str(tmp_path)
    )
    assert "--workers" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="the check is for machines without GPUs")
def test_more_ranks_a_trial_than_cpu_cores_without_a_gpu_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A GPU study (coco_scratch's 8 per trial) would start that many gloo processes per trial.
    ranks = (os.cpu_count() or 1) + 1
    out = tmp_path / "study"
    line = one_line_error(
        capsys, "search", "--study", "digits", "--set", f"gpus_per_trial={ranks}", "--out", str(out)
    )
    assert "studies/digits.yaml" in line and "field 'gpus_per_trial'" in line
    assert f"value {ranks} is not allowed here" in line and "--set gpus_per_trial=1" in line
    assert not out.exists()


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
    assert (
        ctx.search.base_space["optim.lr"].dist.low,
        ctx.search.base_space["optim.lr"].dist.high,
    ) == (
        0.01,
        1.0,
    )
    assert ctx.search.base_space["optim.weight_decay"].dist.high == 1e-3
    sanity.write_text(json.dumps({"search_space": {"weight_decay": [0.0, 1e-3]}}))
    line = one_line_error(
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


def _study_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ["the file is empty", "start from a copy of studies/digits.yaml"]),
        (
            "name: a\nname: b\n",
            ["field 'name'", "the key 'name' appears twice (lines 1 and 2)"],
        ),
        (
            "name: a\nstages:\n  - name: coarse\n    trials: 4\n    trials: 8\n",
            ["field 'stages.0.trials'", "appears twice (lines 4 and 5)"],
        ),
        ("name: x\nspace: " + "[" * 4000 + "]" * 4000 + "\n", ["nesting deeper than 64 levels"]),
    ],
    ids=["empty", "duplicate-key", "duplicate-stage-key", "deep-nesting"],
)
def test_bad_study_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: list[str]
) -> None:
    path = _study_file(tmp_path, text)
    line = one_line_error(capsys, "search", "--study", str(path), "--out", str(tmp_path / "o"))
    assert str(path) in line
    for part in expected:
        assert part in line, line
    assert not (tmp_path / "o").exists()


def test_a_directory_as_the_study(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "studies").mkdir()
    line = one_line_error(capsys, "search", "--study", str(tmp_path / "studies") + "/")
    assert "is a directory, not a YAML file" in line


def test_alias_bomb_study_in_a_real_process(cli: Callable[..., Any], tmp_path: Path) -> None:
    # Before, the study's choices were expanded value by value for minutes.
    lines = ['x0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = "\n".join("    " + line for line in lines)
    text = (
        "name: bomb\nrecipe: digits\nstages: [{name: coarse}]\nspace:\n"
        f"  optim.name:\n    type: categorical\n    choices: [sgd]\n  junk:\n{bomb}\n"
    )
    path = _study_file(tmp_path, text)
    proc = cli("search", "--study", str(path), "--out", str(tmp_path / "o"), timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "more than 100000 values once aliases are expanded" in proc.stderr
