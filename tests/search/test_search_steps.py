"""Time in optimizer steps: a stage's ``steps`` budget and pruning at equal iterations.

A stage's ``steps`` cuts every trial after that many optimizer steps, whatever its
``schedule.length_multiplier``; the schedule keeps its full length, so a 6x trial
trains the start of its 6x schedule. Trials report to the pruner at their step.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, TINY
from optuna.trial import TrialState

from tunekit.config import load_recipe
from tunekit.core import load_checkpoint
from tunekit.engine import make_lr_factor
from tunekit.run import schedule_length, train
from tunekit.search import open_search, run_worker, trial_recipe

# 4 steps an epoch (TINY's train.max_steps_per_epoch); the budget ends mid-epoch 2.
STEPS = 6


def _epoch_records(run_dir: Path) -> list[dict[str, float]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "epoch"]


def test_a_6x_trial_cut_at_the_stage_steps_trains_as_many_steps_as_a_1x(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    stage = {"name": "coarse", "trials": 2, "steps": STEPS}
    space = {
        "schedule.length_multiplier": {"type": "categorical", "choices": [1, 6]},
        "optim.lr": {"type": "log_uniform", "low": 0.01, "high": 0.5},
    }
    plan = open_search(str(write_study(stages=[stage], space=space)), out=tmp_path / "s")
    summaries = {}
    for m in (1, 6):
        params = {"schedule.length_multiplier": m, "optim.lr": 0.1}
        recipe = trial_recipe(plan.study, plan.recipe_data, plan.study.stages[0], params, file="x")
        # The stage gave no epochs: the schedule is the recipe's own length, times m.
        assert recipe.train.epochs == 10 and recipe.train.max_steps == STEPS
        run_dir = tmp_path / f"{m}x"
        summaries[m] = train(recipe, out=run_dir, progress=False)
        state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
        assert state["step"] == STEPS
        records = _epoch_records(run_dir)
        assert [r["step"] for r in records] == [4, STEPS]
        assert records[-1]["epoch"] == pytest.approx(STEPS / 4)
        assert records[-1]["images"] == STEPS * 32
        # The LR the run ended on is its full schedule's at that step: not shortened.
        epochs, schedule = schedule_length(recipe)
        expected = recipe.optim.lr * make_lr_factor(schedule, 4, epochs)(STEPS)
        assert records[-1]["lr"] == pytest.approx(expected, rel=1e-6)
        opt_lr = state["optimizer"]["param_groups"][0]["lr"]
        assert opt_lr == pytest.approx(expected, rel=1e-6)
        assert "val/top1" in records[-1]  # the cut epoch is evaluated
    one, six = summaries[1], summaries[6]
    assert one["steps"] == six["steps"] == STEPS
    assert one["images"] == six["images"] == STEPS * 32
    assert (one["steps_planned"], six["steps_planned"]) == (40, 240)
    for s in (one, six):
        assert s["stop_reason"].startswith("max_steps") and s["epochs_run"] == 2
    # Cosine over 10 epochs vs 60 after a half-epoch warmup: at step 6 the 6x LR is higher.
    lr1, lr6 = (_epoch_records(tmp_path / f"{m}x")[-1]["lr"] for m in (1, 6))
    assert lr6 > lr1 * 1.005


def test_stage_epochs_with_steps_set_the_schedule_length(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    stages = [{"name": "coarse", "trials": 1, "steps": 100, "epochs": 3}, {"name": "fine"}]
    plan = open_search(str(write_study(stages=stages)), out=tmp_path / "s")
    coarse, fine = plan.study.stages
    recipe = trial_recipe(plan.study, plan.recipe_data, coarse, {}, file="x")
    assert (recipe.train.epochs, recipe.train.max_steps) == (3, 100)
    plain = trial_recipe(plan.study, plan.recipe_data, fine, {}, file="x")
    assert (plain.train.epochs, plain.train.max_steps) == (2, None)  # as before steps existed


def test_resuming_a_run_cut_by_max_steps_is_a_normal_end(tmp_path: Path) -> None:
    recipe = load_recipe(REPO / "recipes" / "digits.yaml", [*TINY, "train.max_steps=6"])
    first = train(recipe, out=tmp_path / "run", progress=False)
    again = train(recipe, out=tmp_path / "run", resume="last", progress=False)
    assert first["steps"] == again["steps"] == 6
    assert again["stop_reason"] == first["stop_reason"]
    assert len(_epoch_records(tmp_path / "run")) == 2  # nothing trained or written twice


def test_pruner_gets_values_at_optimizer_steps(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    # 1x and 3x draws, 8 steps each (two epochs of 4): all report at steps 4 and 8.
    stage = {
        "name": "coarse",
        "trials": 4,
        "steps": 8,
        "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 5},
    }
    space = {
        "schedule.length_multiplier": {"type": "categorical", "choices": [1, 3]},
        "optim.lr": {"type": "log_uniform", "low": 0.001, "high": 0.5},
    }
    ctx = open_search(str(write_study(stages=[stage], space=space)), out=tmp_path / "s")
    run_worker(ctx)
    trials = ctx.search.trials(ctx.search.stages[0])
    assert len(trials) == 4
    for t in trials:
        records = _epoch_records(Path(t.user_attrs["run_dir"]))
        assert t.intermediate_values == {int(r["step"]): r["val/top1"] for r in records}
        assert set(t.intermediate_values) <= {4, 8}
        if t.state == TrialState.COMPLETE:
            assert sorted(t.intermediate_values) == [4, 8]
        else:
            # n_warmup_steps counts steps: no trial is pruned at step 4, before 5.
            assert t.state == TrialState.PRUNED and max(t.intermediate_values) == 8
