"""Grid stages, or_zero log ranges, section swaps and gpus_per_trial: auto."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from search_helpers import all_trials, assert_bad_study, one_line_error

from tunekit.errors import ConfigError
from tunekit.search import Range, open_search, refine_space, run_worker, write_summary
from tunekit.search._builders import grid_sampler
from tunekit.search._objective import load_recipe_data, trial_recipe
from tunekit.search._space import (
    check_points,
    grid_points,
    grid_values,
    recipe_values,
    sample,
    space_from_specs,
)
from tunekit.search._study import RefineSpec, load_study
from tunekit.search._validate import check_workers, resolve_gpus

REPO = Path(__file__).resolve().parents[2]

WEIGHT_DECAY = {"type": "log_uniform", "low": 1e-6, "high": 1e-2, "or_zero": True}

# -- bad study files: one line, exit 2 -------------------------------------------------

BAD: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "grid with a range",
        {"stages": [{"name": "sweep", "sampler": "grid"}]},
        ["field 'stages.sweep.sampler'", "grid with a range", "'optim.lr' is a log_uniform range"],
    ),
    (
        "grid with a uniform range without a step",
        {
            "space": {"optim.momentum": {"type": "uniform", "low": 0.5, "high": 0.9}},
            "stages": [{"name": "sweep", "sampler": "grid"}],
        },
        ["field 'stages.sweep.sampler'", "'optim.momentum' is a uniform range without a step"],
    ),
    (
        "grid with more trials than points",
        {
            "space": {"optim.lr": {"type": "categorical", "choices": [0.05, 0.1]}},
            "stages": [{"name": "sweep", "sampler": "grid", "trials": 3}],
        },
        ["field 'stages.sweep.trials'", "value 3 is not allowed", "a grid of 2 points"],
    ),
    (
        "grid stage with refine",
        {
            "space": {"optim.lr": {"type": "categorical", "choices": [0.05, 0.1]}},
            "stages": [
                {"name": "coarse"},
                {"name": "sweep", "sampler": "grid", "refine": {"top_k": 2}},
            ],
        },
        ["field 'stages.sweep.refine'", "is a grid, which runs every point"],
    ),
    (
        "or_zero on a uniform range",
        {"space": {"optim.weight_decay": {**WEIGHT_DECAY, "type": "uniform"}}},
        ["field 'space.optim.weight_decay.or_zero'", "beside a log_uniform range", "uniform"],
    ),
    (
        "or_zero with low 0",
        {"space": {"optim.weight_decay": {**WEIGHT_DECAY, "low": 0.0}}},
        ["field 'space.optim.weight_decay.low'", "with or_zero, low must be above 0, got 0.0"],
    ),
    (
        "swap choice with an unknown recipe field",
        {
            "space": {
                "optim.lr": {"type": "log_uniform", "low": 0.01, "high": 0.5},
                "init": {"choices": {"small": {"model.width": 4}, "big": {"model.widht": 8}}},
            }
        },
        [
            "field 'space.init.choices.big.model.widht'",
            "does not validate",
            "did you mean 'width'",
        ],
    ),
    (
        "swap choice with a value the recipe refuses",
        {
            "space": {
                "optim.lr": {"type": "log_uniform", "low": 0.01, "high": 0.5},
                "init": {"choices": {"small": {"model.width": 4}, "bad": {"model.norm": "xx"}}},
            }
        },
        ["field 'space.init.choices.bad.model.norm'", "'xx'"],
    ),
    (
        "swap override that is not a field path",
        {"space": {"init": {"choices": {"a": {"model width": 4}}}}},
        ["field 'space.init.choices.a'", "'model width' is not a recipe field path"],
    ),
]


@pytest.mark.parametrize(("case", "fields", "expected"), BAD, ids=[c[0] for c in BAD])
def test_bad_study_file_is_one_line(
    case: str,
    fields: dict[str, Any],
    expected: list[str],
    write_study: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    assert_bad_study(capsys, write_study, tmp_path, fields, expected)


# -- grid ---------------------------------------------------------------------------


def test_a_grid_stage_runs_each_point_of_its_grid_once(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    space = {
        "optim.lr": {"type": "categorical", "choices": [0.05, 0.2]},
        "model.width": {"type": "int", "low": 4, "high": 8, "step": 4},
        "optim.momentum": {"role": "fixed", "value": 0.8},
    }
    path = write_study(space=space, stages=[{"name": "sweep", "sampler": "grid", "epochs": 1}])
    out = tmp_path / "study"
    ctx = open_search(str(path), out=out)
    assert ctx.study.stages[0].trials == 4  # left out: the grid's size
    assert run_worker(ctx) == 4
    trials = all_trials(None, out, "tiny")["tiny.sweep"]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    points = sorted((t.params["optim.lr"], t.params["model.width"]) for t in trials)
    assert points == [(0.05, 4), (0.05, 8), (0.2, 4), (0.2, 8)]
    recipe = yaml.safe_load(Path(trials[0].user_attrs["run_dir"], "recipe.yaml").read_text())
    assert recipe["model"]["width"] == trials[0].params["model.width"]
    assert write_summary(ctx)["complete"] is True


def _exhaust(space: dict[str, Range]) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=grid_sampler(space, seed=0))
    seen = []
    for _ in range(len(grid_points(space))):
        trial = study.ask()
        seen.append(sample(trial, space))
        study.tell(trial, 0.0)
    return seen


def test_grids_with_and_without_conditions_reach_every_point_once() -> None:
    plain = {
        "a": Range("a", CategoricalDistribution(("x", "y"))),
        "b": Range("b", FloatDistribution(0.1, 0.3, step=0.1)),
        "c": Range("c", IntDistribution(1, 5, step=2)),
    }
    assert len(grid_points(plain)) == 2 * 3 * 3
    assert grid_values(plain["b"]) == [0.1, 0.2, 0.3]  # in decimals: not 0.30000000000000004
    key = lambda p: json.dumps(p, sort_keys=True)  # noqa: E731
    seen = _exhaust(plain)
    assert sorted(map(key, seen)) == sorted(map(key, grid_points(plain)))
    # A parameter used only under one choice is walked only there: 2 + 3 points, not 2 x 3.
    conditional = {
        "optim.name": Range("optim.name", CategoricalDistribution(("sgd", "rmsprop"))),
        "optim.alpha": Range(
            "optim.alpha",
            CategoricalDistribution((0.9, 0.95, 0.99)),
            when=(("optim.name", ("rmsprop",)),),
        ),
        "seed": Range("seed", IntDistribution(0, 1)),
    }
    points = grid_points(conditional)
    assert len(points) == 2 + 2 * 3
    seen = _exhaust(conditional)
    assert sorted(map(key, seen)) == sorted(map(key, points))


# -- or_zero ------------------------------------------------------------------------


def test_or_zero_is_a_switch_and_a_conditional_log_range(write_study: Callable[..., Path]) -> None:
    path = write_study(
        space={
            "optim.lr": {"type": "uniform", "low": 0.05, "high": 0.2},
            "optim.weight_decay": WEIGHT_DECAY,
        }
    )
    study, _ = load_study(str(path))
    space = space_from_specs(study.space)
    assert space["optim.weight_decay:zero"].dist == CategoricalDistribution((False, True))
    assert space["optim.weight_decay"].when == (("optim.weight_decay:zero", (False,)),)
    values = [recipe_values(p) for p in check_points(space)]
    wds = {v["optim.weight_decay"] for v in values}
    assert wds == {0.0, 1e-6, 1e-2}  # the zero point is checked with the range's ends
    # Refinement narrows both: a top-k that never took 0 drops the zero.
    top = [
        {"optim.lr": 0.1, "optim.weight_decay:zero": False, "optim.weight_decay": 1e-4},
        {"optim.lr": 0.12, "optim.weight_decay:zero": False, "optim.weight_decay": 3e-4},
    ]
    refined, _ = refine_space(space, top, RefineSpec(top_k=2))
    assert refined["optim.weight_decay:zero"].dist.choices == (False,)
    assert refined["optim.weight_decay"].dist.high < 1e-2


def test_or_zero_trials_train_with_0_and_with_drawn_values(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    space = {
        "optim.lr": {"type": "log_uniform", "low": 0.05, "high": 0.2},
        "optim.weight_decay": WEIGHT_DECAY,
    }
    path = write_study(space=space, stages=[{"name": "coarse", "trials": 5, "epochs": 1}], seed=1)
    out = tmp_path / "study"
    ctx = open_search(str(path), out=out)
    run_worker(ctx)
    trials = all_trials(None, out, "tiny")["tiny.coarse"]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    trained = []
    for t in trials:
        recipe = yaml.safe_load(Path(t.user_attrs["run_dir"], "recipe.yaml").read_text())
        trained.append(recipe["optim"]["weight_decay"])
        assert recipe["optim"]["weight_decay"] == recipe_values(t.params)["optim.weight_decay"]
    assert 0.0 in trained and any(1e-6 <= wd <= 1e-2 for wd in trained), trained
    summary = write_summary(ctx)
    for row in summary["stages"][0:1]:
        params = row["best"]["params"]
        assert set(params) == {"optim.lr", "optim.weight_decay"}  # one number, no switch
        assert isinstance(params["optim.weight_decay"], float)


# -- section swaps ------------------------------------------------------------------

SWAP_SPACE: dict[str, Any] = {
    "optim.lr": {"type": "log_uniform", "low": 0.01, "high": 0.5},
    "init": {
        "role": "scientific",
        "choices": {
            "scratch": {"model.weights": None, "schedule.warmup_epochs": 1},
            "pretrained": {"model.weights": "weights/small_cnn.pt", "optim.lr": 0.01},
        },
    },
}


def test_a_section_swap_sets_its_choices_recipe_fields(write_study: Callable[..., Path]) -> None:
    study, _ = load_study(str(write_study(space=SWAP_SPACE)))
    data = load_recipe_data(REPO / "recipes" / "digits.yaml")
    stage = study.stages[0]
    space = space_from_specs(study.space)
    assert set(space["init"].dist.choices) == {"scratch", "pretrained"}  # the file's order

    def recipe(params: dict[str, Any]) -> Any:
        return trial_recipe(study, data, stage, params, file="digits.yaml")

    scratch = recipe({"init": "scratch", "optim.lr": 0.2})
    assert scratch.model.weights is None and scratch.schedule.warmup_epochs == 1
    pre = recipe({"init": "pretrained", "optim.lr": 0.2})
    assert pre.model.weights == "weights/small_cnn.pt"
    assert pre.schedule.warmup_epochs == 0.5  # the recipe's own: the other choice's, not set
    assert pre.optim.lr == 0.2  # a sampled parameter is more specific than a swap's override
    fixed = {**SWAP_SPACE, "init": {**SWAP_SPACE["init"], "role": "fixed", "value": "pretrained"}}
    study, _ = load_study(str(write_study("fixed.yaml", space=fixed)))
    assert "init" not in space_from_specs(study.space)
    held = trial_recipe(study, data, study.stages[0], {"optim.lr": 0.1}, file="digits.yaml")
    assert held.model.weights == "weights/small_cnn.pt"


# -- gpus_per_trial -----------------------------------------------------------------


def test_gpus_per_trial_auto_shares_the_visible_gpus_among_the_workers(
    write_study: Callable[..., Path],
) -> None:
    study, path = load_study(str(write_study()))
    assert study.gpus_per_trial == "auto"
    assert resolve_gpus(study, workers=1, visible=8) == 8
    assert resolve_gpus(study, workers=2, visible=8) == 4
    assert resolve_gpus(study, workers=3, visible=8) == 2
    assert resolve_gpus(study, workers=1, visible=0) == 1  # no GPU: one CPU process
    assert resolve_gpus(study, workers=4, visible=2) == 1  # and gpu_groups says 4 x 1 > 2
    given = study.model_copy(update={"gpus_per_trial": 2})
    assert resolve_gpus(given, workers=1, visible=8) == 2
    check_workers(given, 1, file=str(path), visible=2)  # as many as the machine shows: fine
    with pytest.raises(ConfigError) as exc:
        check_workers(given, 1, file=str(path), visible=1)
    assert exc.value.field == "gpus_per_trial" and "1 visible GPU and a trial would need 2" in str(
        exc.value
    )


def test_auto_is_passed_on_to_the_workers_as_a_number(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    from tunekit.search._validate import prepare_search

    plan = prepare_search(str(write_study()), out=tmp_path / "o", workers=2, visible_gpus=8)
    assert plan.study.gpus_per_trial == 4
    assert "gpus_per_trial=4" in plan.open().worker_args()


def test_more_gpus_a_trial_than_visible_is_one_line(
    write_study: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The machine's count is the one input a GPU-less test machine cannot give for real.
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    path = write_study("bad.yaml", gpus_per_trial=8)
    out = tmp_path / "o"
    line = one_line_error(capsys, "search", "--study", str(path), "--out", str(out))
    assert str(path) in line and "field 'gpus_per_trial'" in line
    assert "value 8 is not allowed here: this machine has 4 visible GPUs" in line
    assert "gpus_per_trial=auto" in line
    assert not out.exists()
