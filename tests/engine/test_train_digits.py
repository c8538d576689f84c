"""The digits recipe, end to end through the CLI: >= 97% validation top-1 in <= 10 epochs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from tunekit.config import load_recipe


def test_digits_recipe_reaches_97_percent_within_a_minute(tmp_path, cli):
    started = time.perf_counter()
    r = cli(
        "train", "--recipe", "recipes/digits.yaml", "--out", str(tmp_path / "run"), "--no-progress"
    )
    wall = time.perf_counter() - started
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs_run"] <= 10
    assert summary["final"]["val/top1"] >= 0.97, summary["final"]
    assert summary["best"]["value"] >= summary["final"]["val/top1"]
    assert wall < 60, f"took {wall:.0f}s"
    # The run directory holds what scripts read, and the command says where it is.
    assert f"run directory: {tmp_path / 'run'}" in r.stdout
    for name in ("recipe.yaml", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (tmp_path / "run" / name).is_file(), name
    resolved = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert resolved["optim"]["lr"] == load_recipe(Path("recipes/digits.yaml")).optim.lr
    print(
        f"digits: val/top1 {summary['final']['val/top1']:.4f} in {summary['wall_time_s']:.1f}s of training"
    )


def test_overrides_reach_the_resolved_recipe(tmp_path, cli):
    r = cli(
        "train",
        "--recipe",
        "recipes/digits.yaml",
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
        "--set",
        "train.epochs=1",
        "--set",
        "optim.lr=0.05",
        "--set",
        "data.train_subset=256",
        "--set",
        "train.early_stopping={patience: 1}",
    )
    assert r.returncode == 0, r.stderr
    resolved = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert resolved["optim"]["lr"] == 0.05 and resolved["train"]["epochs"] == 1
    assert resolved["train"]["early_stopping"]["patience"] == 1
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 256 // 64
