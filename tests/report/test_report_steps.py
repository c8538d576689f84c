"""Curves against optimizer steps: a run's, two runs' with different epochs, a study's."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tunekit.config import load_recipe
from tunekit.report import Series, load_run, report_data, step_axis
from tunekit.run import train

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "model.width=8",
    "train.device=cpu",
    "data.train_subset=256",
    "data.val_subset=120",
    "train.max_steps_per_epoch=4",
    "train.batch_size=32",
    "diagnostics.enabled=false",
    "data.augment.random_crop_padding=0",
]


def test_a_cut_run_report_plots_metrics_against_steps(tmp_path: Path) -> None:
    recipe = load_recipe(REPO / "recipes" / "digits.yaml", [*TINY, "train.max_steps=6"])
    train(recipe, out=tmp_path / "run", progress=False)
    data = report_data(load_run(tmp_path / "run"))
    top1 = next(s for s in data.metrics if s.name == "val/top1")
    assert top1.x == [4.0, 6.0]  # optimizer steps: the second epoch was cut at step 6
    assert top1.epochs == [1.0, 1.5] and top1.images == [128.0, 192.0]
    assert data.axis.steps_per_epoch == 4 and data.axis.images_per_step == 32
    assert data.axis.epoch_ticks == [(0.0, 0.0), (4.0, 1.0)]


def _run(run_dir: Path, steps_per_epoch: int, batch: int, epochs: int) -> Path:
    run_dir.mkdir(parents=True)
    lines = [
        {
            "kind": "epoch",
            "epoch": float(e),
            "step": e * steps_per_epoch,
            "images": e * steps_per_epoch * batch,
            "val/top1": 0.1 * e,
        }
        for e in range(1, epochs + 1)
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run_dir


def test_epochs_label_the_axis_only_where_runs_agree_on_them(tmp_path: Path) -> None:
    small = report_data(load_run(_run(tmp_path / "a", 10, 32, 3))).metrics
    big = report_data(load_run(_run(tmp_path / "b", 5, 64, 6))).metrics
    same = report_data(load_run(_run(tmp_path / "c", 10, 32, 2))).metrics
    # The same images at the same points, but epochs of 10 and 5 steps: no epoch labels.
    mixed = step_axis([*small, *big])
    assert mixed.steps_per_epoch is None and mixed.epoch_ticks == []
    assert mixed.images_per_step is None  # 32 and 64 images a step
    agreed = step_axis([*small, *same])
    assert agreed.steps_per_epoch == 10 and agreed.images_per_step == 32
    assert agreed.epoch_ticks == [(0.0, 0.0), (10.0, 1.0), (20.0, 2.0), (30.0, 3.0)]
    # Records written before images were recorded: steps still, images unknown.
    old = Series("old", [10.0], [0.5], [1.0], [math.nan])
    assert step_axis([old]).images_per_step is None and step_axis([old]).steps_per_epoch == 10


def test_study_curves_and_comparison_are_in_steps(tmp_path: Path) -> None:
    from tunekit.search._report import curves_axis, metric_by_steps, read_curve

    one = read_curve(str(_run(tmp_path / "1x", 10, 32, 2)), "val/top1")
    six = read_curve(str(_run(tmp_path / "6x", 10, 32, 4)), "val/top1")
    assert one["step"] == [10.0, 20.0] and one["images"] == [320.0, 640.0]
    trials = [
        {"stage": "s", "trial": n, "state": "COMPLETE", "curve": c}
        for n, c in enumerate((one, six))
    ]
    data = {"study": "a", "direction": "maximize", "stages": [{"name": "s"}], "trials": trials}
    assert metric_by_steps(data) == {
        20: (pytest.approx(0.2), 640.0),
        40: (pytest.approx(0.4), 1280.0),
    }
    assert curves_axis(data).steps_per_epoch == 10
