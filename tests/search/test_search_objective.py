"""Staged searches over a user's Python function (``objective: "pkg.mod:fn"``, ``run(objective=fn)``).

The objectives are closed-form curves of a few lines: the tests are about the search around them
(stages, pruning, refinement, workers, resuming, cells, repeats, one-line errors).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from search_helpers import REPO, all_trials, one_line_error

import tunekit.search
from tunekit.errors import TunekitError

#: A score that peaks at x = 0.3, lr = 0.01 and rises over the epochs; written to metrics.jsonl
#: as tunekit's trainer writes its epoch records, then reported.
QUADRATIC = """
import json
import math
import time


def fn(params, trial):
    quality = -((params["x"] - 0.3) ** 2) - 0.1 * (math.log10(params["lr"]) + 2.0) ** 2
    value = None
    with open(trial.run_dir / "metrics.jsonl", "a") as log:
        for epoch in range(1, trial.epochs + 1):
            value = quality - 1.0 / epoch
            log.write(json.dumps({"kind": "epoch", "step": epoch, "epoch": epoch, "score": value}))
            log.write("\\n")
            log.flush()
            time.sleep(0.02)  # long enough that both workers take trials
            trial.report(epoch, value)
    return value
"""


@pytest.fixture(autouse=True)
def _own_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The study folders added to sys.path and the modules imported from them go afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name in [m for m in sys.modules if m.startswith("tk_objective")]:
        del sys.modules[name]


def _module(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def _study(path: Path, **fields: Any) -> Path:
    data: dict[str, Any] = {
        "name": "objective",
        "metric": "score",
        "direction": "maximize",
        "space": {
            "x": {"type": "uniform", "low": 0.0, "high": 1.0},
            "lr": {"type": "log_uniform", "low": 1e-4, "high": 1.0},
        },
        "stages": [
            {
                "name": "coarse",
                # Quasi-random points differ by trial number, so two workers never draw the same.
                "sampler": "qmc",
                "trials": 12,
                "epochs": 3,
                "pruner": {"name": "median", "n_startup_trials": 2},
            },
            {"name": "fine", "sampler": "tpe", "trials": 4, "epochs": 5, "refine": {"top_k": 3}},
        ],
        "liveness": {"heartbeat_s": 0.5, "grace_s": 20, "max_retry": 1},
    }
    data.update(fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def _by_stage(out: Path, name: str = "objective") -> dict[str, list[optuna.trial.FrozenTrial]]:
    return {k.split(".", 1)[1]: v for k, v in all_trials(None, out, name).items()}


def test_a_module_objective_on_two_workers_resumes_to_the_planned_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tunekit.cli import main

    mods = tmp_path / "mods"  # not the study's folder: found through PYTHONPATH
    _module(mods, "tk_objective_quadratic", QUADRATIC)
    monkeypatch.syspath_prepend(str(mods))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(mods), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    study = _study(tmp_path / "studies" / "quad.yaml", objective="tk_objective_quadratic:fn")
    out = tmp_path / "out"
    args = ["search", "--study", str(study), "--out", str(out), "--no-progress"]

    # A first run that stops at 5 trials, in this process ...
    assert main([*args, "--set", "rounds.max_trials=5"]) == 0
    first = _by_stage(out)
    assert sum(len(ts) for ts in first.values()) == 5

    # ... and the full run on two worker processes, which picks up where it stopped.
    assert main([*args, "--workers", "2"]) == 0, capsys.readouterr().err
    trials = _by_stage(out)
    coarse, fine = trials["coarse"], trials["fine"]
    assert [t.number for t in coarse[:5]] == [t.number for t in first["coarse"]]
    assert [t.state for t in coarse[:5]] == [t.state for t in first["coarse"]]
    for ts, planned in ((coarse, 12), (fine, 4)):
        assert len(ts) == planned, [(t.number, t.state) for t in ts]
        assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in ts)
    pruned = [t for t in coarse if t.state == TrialState.PRUNED]
    assert pruned, "the median pruner stopped no trial"
    assert all(len(t.intermediate_values) < 3 for t in pruned)
    workers = {t.user_attrs["worker"] for t in coarse[5:] + fine}
    assert 1 <= len(workers) <= 2 and not any(w.endswith(f":{os.getpid()}") for w in workers)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    fine_x = summary["stages"][1]["ranges"]["x"]
    assert fine_x["high"] - fine_x["low"] < 0.9  # refined around the best coarse trials
    assert abs(summary["best"]["params"]["x"] - 0.3) < 0.35  # the peak, within a wide margin
    complete = [t.value for t in coarse + fine if t.state == TrialState.COMPLETE]
    assert max(v for v in complete if v is not None) == pytest.approx(summary["best"]["value"])

    # The report reads each trial's metrics.jsonl as it reads a recipe trial's.
    capsys.readouterr()
    assert main(["report", "--study", str(study), "--out", str(out)]) == 0
    assert (out / "report.html").is_file()
    ctx = tunekit.search.open_search(str(study), out=out, create=False)
    data = tunekit.search.study_report_data(ctx.search)
    done = [t for t in data["trials"] if t["state"] == "COMPLETE"]
    assert done and all(t["curve"]["metric"] for t in done)
    assert all(len(t["curve"]["metric"]) in (3, 5) for t in done)


def test_two_workers_asking_for_a_cells_last_trial_run_it_once(tmp_path: Path) -> None:
    """Both saw one trial left; the storage numbered their asks, and the later one is not run."""
    from tunekit.search._trial import claim_trial, run_claimed

    def objective(params: dict[str, Any], trial: Any) -> float:
        for step in range(1, trial.epochs + 1):
            trial.report(step, -((params["x"] - 0.3) ** 2) - 1.0 / step)
        return -((params["x"] - 0.3) ** 2) - 1.0 / trial.epochs

    study = _study(tmp_path / "quad.yaml")
    out = tmp_path / "out"
    tunekit.search.run(study, objective=objective, out=out, max_trials=11)
    ctx = tunekit.search.open_search(str(study), out=out, objective=objective)
    coarse = ctx.search.training_unit(ctx.search.units(ctx.search.stages[0])[0])
    assert ctx.search.counts(coarse).accounted == 11

    first, second = claim_trial(ctx, coarse), claim_trial(ctx, coarse)
    assert first is not None and second is None
    assert run_claimed(ctx, coarse, first) in (TrialState.COMPLETE, TrialState.PRUNED)
    summary = tunekit.search.run(study, objective=objective, out=out)

    trials = _by_stage(out)  # the helper checks the extra trial failed without running
    assert [len(trials["coarse"]), len(trials["fine"])] == [12, 4]
    done = [
        sum(s["counts"][k] for k in ("complete", "pruned", "failed")) for s in summary["stages"]
    ]
    assert done == [12, 4] and summary["complete"]
    stored = optuna.load_study(
        study_name="objective.coarse",
        storage=tunekit.search.open_storage(None, out, ctx.study.liveness),
    ).get_trials()
    assert len(stored) == 13 and "another worker" in stored[12].user_attrs["failure_reason"]


SWEEP = {
    "name": "sweep",
    "metric": "score",
    "direction": "maximize",
    "seed": 7,
    "space": {
        "opt": {"type": "categorical", "choices": ["a", "b"], "role": "scientific"},
        "arch": {"choices": {"small": {}, "big": {}}},
        "wd": {"type": "log_uniform", "low": 1e-4, "high": 1e-1, "or_zero": True},
        "x": {"type": "uniform", "low": -1.0, "high": 1.0},
        "k": {"role": "fixed", "value": 3},
    },
    "stages": [
        {"name": "coarse", "sampler": "random", "trials": 3, "steps": 40},
        {"name": "final", "repeat": {"seeds": 2, "first_seed": 11}},
    ],
}


def test_a_callable_runs_through_search_run_with_cells_swaps_and_repeats(tmp_path: Path) -> None:
    calls: list[tuple[dict[str, Any], tunekit.search.ObjectiveTrial]] = []

    def objective(params: dict[str, Any], trial: tunekit.search.ObjectiveTrial) -> float | None:
        calls.append((dict(params), trial))
        value = -(params["x"] ** 2) + (0.1 if params["opt"] == "b" else 0.0)
        trial.report(0, value - 1.0)
        trial.report(1, value)
        # None: the last reported value is the trial's value.
        return None if params["arch"] == "small" else value

    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(SWEEP, sort_keys=False))  # no objective: the callable is it
    summary = tunekit.search.run(path, objective=objective, out=tmp_path / "out")

    assert summary["complete"] is True
    assert len(calls) == 2 * 3 + 2 * 2  # two cells: three coarse trials and two seeds each
    for params, trial in calls:
        assert list(params) == ["opt", "arch", "wd", "x", "k"]
        assert params["arch"] in ("small", "big") and params["k"] == 3
        assert params["wd"] == 0.0 or 1e-4 <= params["wd"] <= 1e-1
        assert trial.cell == {"opt": params["opt"]}
        assert (trial.epochs, trial.steps) == (None, 40)  # the repeat trains as coarse did
        assert trial.run_dir.is_dir()
        assert trial.run_dir.is_relative_to(tmp_path / "out" / "trials" / trial.stage)
    coarse = [t for p, t in calls if t.stage == "coarse"]
    final = [(p, t) for p, t in calls if t.stage == "final"]
    assert {t.seed for t in coarse} == {7}
    assert sorted(t.seed for _, t in final) == [11, 11, 12, 12]
    # Each cell repeats its own best coarse trial's values with each seed.
    for cell in ("a", "b"):
        best = max(
            (t.reported[1], p["x"]) for p, t in calls if t.stage == "coarse" and p["opt"] == cell
        )
        assert {p["x"] for p, t in final if p["opt"] == cell} == {best[1]}
    trials = all_trials(None, tmp_path / "out", "sweep")
    for ts in trials.values():
        for t in ts:
            assert t.state == TrialState.COMPLETE
            assert t.value == pytest.approx(t.intermediate_values[1])


def test_the_example_runs_and_finds_a_low_loss(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "objective_search_example", REPO / "examples" / "objective_search.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    summary = example.main(str(tmp_path / "demo"))
    assert summary["complete"] is True
    counts = [s["counts"] for s in summary["stages"]]
    assert [c["complete"] + c["pruned"] for c in counts] == [16, 8]
    assert counts[0]["pruned"] > 0
    # Noise is 0.1, so the best reachable loss is about 0.01; an untrained model's is about 8.
    assert summary["best"]["value"] < 0.1


def _bad_study(tmp_path: Path, **fields: Any) -> Path:
    data = {k: v for k, v in SWEEP.items() if k != "stages"}
    data["stages"] = [{"name": "coarse", "trials": 2, "epochs": 1}]
    data.update(fields)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in data.items() if v is not None}))
    return path


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"objective": "tk_no_such_module:fn"},
            [
                "field 'objective'",
                "'tk_no_such_module:fn' does not import",
                "ModuleNotFoundError: No module named 'tk_no_such_module'",
            ],
        ),
        (
            {"objective": "tk_objective_raises:fn"},
            ["field 'objective'", "RuntimeError: no GPU here"],
        ),
        (
            {"objective": "tk_objective_raises_not:fnn"},
            ["field 'objective'", "has no 'fnn' (did you mean 'fn'?)"],
        ),
        ({"objective": "tk_objective_raises_not.fn"}, ["field 'objective'", "module:function"]),
        (
            {"objective": "tk_objective_raises_not:fn", "recipe": "digits"},
            ["field 'objective'", "both recipe 'digits' and objective"],
        ),
        ({}, ["field 'recipe'", 'objective: "mypkg.train:fn"']),
        (
            {"objective": "tk_objective_raises_not:fn", "set": ["optim.lr=0.1"]},
            ["field 'set'", "overrides a recipe field"],
        ),
    ],
    ids=["no module", "import raises", "no such name", "no colon", "both", "neither", "set"],
)
def test_bad_objectives_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fields: dict[str, Any], expected: list[str]
) -> None:
    # Beside the study file: found there without PYTHONPATH.
    _module(tmp_path, "tk_objective_raises", "raise RuntimeError('no GPU here\\nsecond line')\n")
    _module(tmp_path, "tk_objective_raises_not", "def fn(params, trial):\n    return 1.0\n")
    study = _bad_study(tmp_path, **fields)
    out = tmp_path / "out"
    line = one_line_error(
        capsys, "search", "--study", str(study), "--out", str(out), "--no-progress"
    )
    for part in [str(study), *expected]:
        assert part in line, line
    assert not out.exists()


def test_an_objective_without_a_value_fails_its_trials_and_stops_the_search(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tunekit.cli import main

    _module(tmp_path, "tk_objective_silent", "def fn(params, trial):\n    pass\n")
    study = _bad_study(tmp_path, objective="tk_objective_silent:fn")
    out = tmp_path / "out"
    assert main(["search", "--study", str(study), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    # The search said where it runs, then stopped with one line.
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("tunekit: error: "), err
    assert str(study) in last and "field 'objective'" in last, last
    assert "every trial of stage 'coarse' failed" in last, last
    trials = [t for ts in all_trials(None, out, "sweep").values() for t in ts]
    assert len(trials) == 2 * 2  # two trials in each of two cells, and no retries
    for t in trials:
        assert t.state == TrialState.FAIL
        assert t.user_attrs["failure_reason"].startswith("the objective returned None")


def test_a_callable_cannot_go_to_worker_processes(tmp_path: Path) -> None:
    study = _bad_study(tmp_path)
    with pytest.raises(TunekitError) as err:
        tunekit.search.run(study, objective=lambda params, trial: 1.0, workers=2)
    line = str(err.value)
    assert "\n" not in line
    assert "field 'workers'" in line and 'objective: "pkg.mod:fn"' in line, line


def test_trial_report_stops_a_non_finite_value_and_a_returned_one_fails(tmp_path: Path) -> None:
    def objective(params: dict[str, Any], trial: tunekit.search.ObjectiveTrial) -> float:
        if params["opt"] == "a":
            trial.report(0, math.nan)
        return math.inf

    study = _bad_study(tmp_path)
    summary = tunekit.search.run(study, objective=objective, out=tmp_path / "out")
    assert summary["complete"] is True
    trials = all_trials(None, tmp_path / "out", "sweep")
    states = {name.rsplit(".", 1)[1]: {t.state for t in ts} for name, ts in trials.items()}
    assert states == {"opt=a": {TrialState.PRUNED}, "opt=b": {TrialState.FAIL}}
    reasons = {t.user_attrs["failure_reason"] for ts in trials.values() for t in ts}
    assert reasons == {
        "non-finite value (nan) reported at step 0",
        "the objective's value is not finite (inf)",
    }


def test_an_objective_that_raises_fails_and_its_parameters_run_again(tmp_path: Path) -> None:
    seen: list[float] = []

    def objective(params: dict[str, Any], trial: tunekit.search.ObjectiveTrial) -> float:
        seen.append(params["x"])
        if len(seen) == 1:
            raise RuntimeError("out of memory, once")
        return params["x"]

    study = _bad_study(tmp_path, space={"x": {"type": "uniform", "low": 0.0, "high": 1.0}})
    summary = tunekit.search.run(study, objective=objective, out=tmp_path / "out")
    assert summary["complete"] is True
    (retry,) = summary["retries"]
    assert retry["reason"] == "RuntimeError: out of memory, once"
    trials = {
        t.number: t for ts in all_trials(None, tmp_path / "out", "sweep").values() for t in ts
    }
    failed, again = trials[retry["trial"]], trials[retry["retried_as"]]
    assert failed.state == TrialState.FAIL and again.state == TrialState.COMPLETE
    assert again.params == failed.params and seen.count(seen[0]) == 2
