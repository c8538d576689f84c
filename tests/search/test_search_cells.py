"""Scientific parameters split a study into cells, each tuned on its own; repeat stages."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from optuna.trial import TrialState
from scipy import stats
from search_helpers import all_trials, assert_bad_study, start_cli

from tunekit.search import RefineSpec, open_search, refine_space, run_worker
from tunekit.search._stages import furthest_first, plan_cells
from tunekit.search._study import load_study

#: The optimizer is what the study compares; each one's settings are tuned for it
#: (momentum only where the optimizer takes one: a condition on the scientific parameter).
CELL_SPACE: dict[str, Any] = {
    "optim.name": {
        "type": "categorical",
        "choices": ["sgd", "adam", "rmsprop"],
        "role": "scientific",
    },
    "optim.lr": {"type": "log_uniform", "low": 1e-3, "high": 0.1},
    "optim.momentum": {
        "type": "uniform",
        "low": 0.5,
        "high": 0.95,
        "when": {"optim.name": ["sgd", "rmsprop"]},
    },
    "optim.nesterov": {"role": "fixed", "value": True, "when": {"optim.name": "sgd"}},
}
KEYS = ["name=sgd", "name=adam", "name=rmsprop"]


def _finished(trials: list[Any]) -> list[Any]:
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def test_two_workers_and_a_restart_fill_every_cell_and_refine_each_from_its_own_trials(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    study_file = write_study(
        "cells.yaml",
        name="cells",
        space=CELL_SPACE,
        stages=[
            {"name": "coarse", "sampler": "random", "trials": 2, "epochs": 1},
            {"name": "fine", "sampler": "tpe", "trials": 1, "epochs": 2, "refine": {"top_k": 2}},
        ],
    )
    out = tmp_path / "cells"
    # Stopped after 4 of the 6 coarse trials: the cells were filled evenly.
    ctx = open_search(str(study_file), out=out)
    assert [c.key for c in ctx.search.cells] == KEYS
    assert run_worker(ctx, max_trials=4) == 4
    counts = sorted(len(ts) for ts in all_trials(None, out, "cells").values())
    assert counts == [1, 1, 2], counts
    # Resumed by two worker processes on the same journal.
    proc = start_cli(
        "search", "--study", str(study_file), "--out", str(out), "--workers", "2", "--no-progress"
    )
    stdout, stderr = proc.communicate(timeout=400)
    assert proc.returncode == 0, stderr[-3000:]
    trials = all_trials(None, out, "cells")
    names = {f"cells.{stage}.{key}" for stage in ("coarse", "fine") for key in KEYS}
    assert set(trials) == names
    workers = set()
    for name, ts in trials.items():
        planned = 2 if ".coarse." in name else 1
        assert len(ts) == len(_finished(ts)) == planned, (name, [t.state for t in ts])
        optimizer = name.rsplit("=", 1)[1]
        for t in ts:
            assert t.params["optim.name"] == optimizer
            # The condition reads the cell's value as the trial's own.
            assert ("optim.momentum" in t.params) == (optimizer != "adam"), t.params
            workers.add(t.user_attrs["worker"])
    assert len(workers) >= 2, workers
    # Each cell's fine ranges come from that cell's coarse trials alone.
    ctx = open_search(str(study_file), out=out)
    coarse, fine = ctx.search.stages
    refine = RefineSpec(top_k=2)
    for c_unit, f_unit in zip(ctx.search.units(coarse), ctx.search.units(fine)):
        top = furthest_first(trials[c_unit.study_name], "maximize")[:2]
        expected, _ = refine_space(ctx.search.space(c_unit), [t.params for t in top], refine)
        stored = ctx.search.space(f_unit)
        assert {k: r.to_dict() for k, r in stored.items()} == {
            k: r.to_dict() for k, r in expected.items()
        }
        assert stored["optim.name"].dist.choices == (c_unit.cell.params["optim.name"],)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and summary["unfinished"] is None
    assert [c["cell"] for c in summary["cells"]] == KEYS
    for stage in summary["stages"]:
        assert [c["cell"] for c in stage["cells"]] == KEYS
        assert stage["trials_planned"] == 3 * (2 if stage["name"] == "coarse" else 1)
    assert "name=adam" in stdout and "best val/top1" in stdout


def test_a_repeat_stage_trains_each_cells_best_with_distinct_seeds(
    write_study: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study_file = write_study(
        "rep.yaml",
        name="rep",
        space={
            "model.width": {"type": "categorical", "choices": [4, 8], "role": "scientific"},
            "optim.lr": {"type": "log_uniform", "low": 0.02, "high": 0.3},
        },
        stages=[
            {"name": "coarse", "sampler": "random", "trials": 2, "epochs": 1},
            {"name": "final", "repeat": {"seeds": 3}},
        ],
    )
    out = tmp_path / "rep"
    ctx = open_search(str(study_file), out=out)
    assert run_worker(ctx) == 2 * 2 + 2 * 3
    from tunekit.search._worker import write_summary

    summary = write_summary(ctx)
    coarse, final = ctx.search.stages
    (rep,) = summary["repeats"]
    assert rep["test"] == "welch_t" and rep["stage"] == "final"
    for c_unit, f_unit in zip(ctx.search.units(coarse), ctx.search.units(final)):
        best = max(ctx.search.trials(c_unit), key=lambda t: t.value or 0.0)
        ts = sorted(ctx.search.trials(f_unit), key=lambda t: t.params["seed"])
        assert [t.state for t in ts] == [TrialState.COMPLETE] * 3
        assert [t.params["seed"] for t in ts] == [1, 2, 3]
        for t in ts:
            # The source's setting, nothing sampled, trained as long as the source was.
            assert {k: v for k, v in t.params.items() if k != "seed"} == best.params
            assert t.user_attrs["epochs_run"] == 1
            recipe = yaml.safe_load((Path(t.user_attrs["run_dir"]) / "recipe.yaml").read_text())
            assert recipe["seed"] == t.params["seed"]
        values = np.array([t.value for t in ts])
        row = rep["cells"][c_unit.cell.key]
        assert row["values"] == list(values) and row["seeds"] == [1, 2, 3]
        assert math.isclose(row["mean"], values.mean(), rel_tol=1e-9)
        assert math.isclose(row["std"], values.std(ddof=1), rel_tol=1e-9, abs_tol=1e-12)
        half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / math.sqrt(3)
        assert row["ci95"][0] == pytest.approx(values.mean() - half, abs=1e-9)
        assert row["ci95"][1] == pytest.approx(values.mean() + half, abs=1e-9)
    means = {k: r["mean"] for k, r in rep["cells"].items()}
    assert rep["best_cell"] == max(means, key=lambda k: means[k])
    other = next(k for k in means if k != rep["best_cell"])
    a, b = rep["cells"][other]["values"], rep["cells"][rep["best_cell"]]["values"]
    p = stats.ttest_ind(a, b, equal_var=False).pvalue
    if math.isfinite(p):
        assert rep["cells"][other]["p_vs_best"] == pytest.approx(p)
        assert rep["cells"][other]["indistinguishable_from_best"] == (p >= 0.05)
    assert rep["cells"][rep["best_cell"]]["indistinguishable_from_best"] is True
    # The repeat's trials do not compete for the study's best: that is a searched setting.
    assert summary["best"]["stage"] == "coarse"
    # The terminal summary and the study report show each cell's mean and interval.
    from tunekit.search._report import render_report, study_report_data
    from tunekit.search.cli import print_study_summary

    print_study_summary(summary)
    printed = capsys.readouterr().out
    assert "±" in printed and "width=4" in printed and "Welch" in printed
    data = study_report_data(ctx.search)
    page = render_report(data, [], None)
    assert "<h2>cells</h2>" in page and "width=8" in page and "Welch" in page
    # The figure: each cell's best trial against its optimizer steps, and the repeat's means.
    fig = data["figure"]
    assert [c["cell"] for c in fig["curves"]] == [u.cell.key for u in ctx.search.units(coarse)]
    for c, cell in zip(fig["curves"], summary["cells"]):
        assert c["trial"] == cell["best"]["trial"] and c["group"] == c["cell"]
        records = [
            json.loads(line)
            for line in (Path(cell["best"]["run_dir"]) / "metrics.jsonl").read_text().splitlines()
        ]
        epochs = [r for r in records if r["kind"] == "epoch"]
        assert c["steps"] == [r["step"] for r in epochs] and c["end_step"] == epochs[-1]["step"]
        assert c["values"] == [r["val/top1"] for r in epochs]
    assert {f["cell"]: (f["mean"], f["n"]) for f in fig["finals"]} == {
        k: (r["mean"], 3) for k, r in rep["cells"].items()
    }
    assert "<h2>scientific comparison</h2>" in page


def test_cell_keys_use_short_names_and_the_product_of_choices(
    write_study: Callable[..., Path],
) -> None:
    path = write_study(
        "keys.yaml",
        space={
            "schedule.length_multiplier": {
                "type": "categorical",
                "choices": [1, 2],
                "role": "scientific",
            },
            "model.norm": {"type": "categorical", "choices": ["gn", "bn"], "role": "scientific"},
            "optim.lr": {"type": "log_uniform", "low": 0.01, "high": 0.5},
        },
    )
    study, _ = load_study(str(path))
    keys = [c.key for c in plan_cells(study)]
    assert keys == [
        "length_multiplier=1,norm=gn",
        "length_multiplier=1,norm=bn",
        "length_multiplier=2,norm=gn",
        "length_multiplier=2,norm=bn",
    ]


BAD: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "numeric scientific range",
        {
            "space": {
                "optim.lr": {"type": "log_uniform", "low": 0.01, "high": 0.5, "role": "scientific"}
            }
        },
        ["field 'space.optim.lr.type'", "must be categorical", "type: categorical"],
    ),
    (
        "repeat as the first stage",
        {"stages": [{"name": "final", "repeat": {"seeds": 3}}]},
        ["field 'stages.final.repeat'", "no earlier best setting to repeat"],
    ),
    (
        "repeat with one seed",
        {"stages": [{"name": "coarse"}, {"name": "final", "repeat": {"seeds": 1}}]},
        ["field 'stages.final.repeat.seeds'", "2 or more seeds", "got 1"],
    ),
    (
        "repeat with its own sampler",
        {
            "stages": [
                {"name": "coarse"},
                {"name": "final", "sampler": "tpe", "repeat": {"seeds": 3}},
            ]
        },
        ["field 'stages.final.sampler'", "no 'sampler' of its own"],
    ),
    (
        "repeat with refine",
        {
            "stages": [
                {"name": "coarse"},
                {"name": "final", "refine": {"top_k": 2}, "repeat": {"seeds": 3}},
            ]
        },
        ["field 'stages.final.refine'", "no 'refine' of its own"],
    ),
]


@pytest.mark.parametrize(("case", "fields", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_cells_and_repeats_are_one_line(
    case: str,
    fields: dict[str, Any],
    expected: list[str],
    write_study: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    assert_bad_study(capsys, write_study, tmp_path, fields, expected)
