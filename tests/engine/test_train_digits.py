"""The digits recipe, end to end through the CLI: >= 97% validation top-1 in <= 10 epochs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from tunekit.config import load_recipe

DIGITS = str(Path(__file__).resolve().parents[2] / "recipes" / "digits.yaml")


def test_digits_recipe_reaches_97_percent_within_10_epochs(tmp_path, capsys):
    from tunekit.cli import main  # in-process: the command, without a second interpreter start

    # Measured: 0.997 top-1 (1 error in 360 images, where 0.97 allows 10). The README's
    # "~10 s" is a quiet machine's figure; a loaded one may take several times that, so the
    # wall time is printed, not asserted.
    started = time.perf_counter()
    rc = main(["train", "--recipe", DIGITS, "--out", str(tmp_path / "run"), "--no-progress"])
    wall = time.perf_counter() - started
    out = capsys.readouterr()
    assert rc == 0, out.err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs_run"] <= 10
    assert summary["final"]["val/top1"] >= 0.97, summary["final"]
    assert summary["best"]["value"] >= summary["final"]["val/top1"]
    # The run directory holds what scripts read, and the command says where it is.
    assert f"run directory: {tmp_path / 'run'}" in out.out
    for name in ("recipe.yaml", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (tmp_path / "run" / name).is_file(), name
    resolved = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert resolved["optim"]["lr"] == load_recipe(Path(DIGITS)).optim.lr
    print(
        f"\ndigits: val/top1 {summary['final']['val/top1']:.4f} in {summary['wall_time_s']:.1f}s of "
        f"training, {wall:.0f}s in all"
    )


def test_overrides_reach_the_resolved_recipe(tmp_path, capsys):
    from tunekit.cli import main  # in-process: the command line's parsing is what is tested

    rc = main(
        [
            "train",
            "--recipe",
            DIGITS,
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
        ]
    )
    assert rc == 0, capsys.readouterr().err
    resolved = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert resolved["optim"]["lr"] == 0.05 and resolved["train"]["epochs"] == 1
    assert resolved["train"]["early_stopping"]["patience"] == 1
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 256 // 64
