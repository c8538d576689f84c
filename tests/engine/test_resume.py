"""A run killed with SIGKILL mid-epoch and resumed ends with the same weights, bit for bit."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from tunekit.core import load_checkpoint

REPO = Path(__file__).resolve().parents[2]

# 512 of the training digits, batch 64: 8 steps (512 items) an epoch.
ITEMS_PER_EPOCH = 512
RECIPE = {
    "name": "resume",
    "data": {
        "builder": "helpers_killing:killing_digits",
        "kwargs": {"image_size": 12},
        "train_subset": ITEMS_PER_EPOCH,
    },
    "model": {"name": "small_cnn", "width": 8, "norm": "bn", "dropout": 0.2},
    "train": {"epochs": 3, "batch_size": 64},
}


def _final_state(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")


@pytest.fixture
def reference(tmp_path_factory, cli) -> dict:
    """The uninterrupted run's final state."""
    tmp = tmp_path_factory.mktemp("ref")
    recipe = _write(tmp)
    r = cli(
        "train", "--recipe", str(recipe), "--out", str(tmp / "run"), "--no-progress", env=_env(0)
    )
    assert r.returncode == 0, r.stderr
    return _final_state(tmp / "run")


def _write(tmp: Path) -> Path:
    import yaml

    data = yaml.safe_load((REPO / "recipes" / "digits.yaml").read_text())
    for k, v in RECIPE.items():
        data[k] = {**data[k], **v} if isinstance(v, dict) and isinstance(data.get(k), dict) else v
    data["output_dir"] = str(tmp / "runs")
    path = tmp / "resume.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _env(kill_at: int) -> dict[str, str]:
    return {"TUNEKIT_TEST_KILL_AT": str(kill_at), "PYTHONPATH": str(REPO / "tests")}


def test_sigkill_twice_mid_epoch_then_resume_is_bit_exact(reference, tmp_path, cli):
    ref_state = reference
    recipe = _write(tmp_path)
    run_dir = tmp_path / "run"
    ckpt = run_dir / "checkpoints" / "last.pt"

    # 1. Killed in the middle of epoch 2.
    killed = cli(
        "train",
        "--recipe",
        str(recipe),
        "--out",
        str(run_dir),
        "--no-progress",
        env=_env(ITEMS_PER_EPOCH + 300),
    )
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    assert load_checkpoint(ckpt)["epoch"] == 1  # it really died mid-run, after a checkpoint

    # 2. Resumed in its directory (--out DIR --resume), which redoes epoch 2, and killed again
    #    early in epoch 3, inside a batch (the item count starts again with the process).
    again = cli(
        "train",
        "--recipe",
        str(recipe),
        "--out",
        str(run_dir),
        "--resume",
        "--no-progress",
        env=_env(ITEMS_PER_EPOCH + 64 * 3 + 5),
    )
    assert again.returncode == -signal.SIGKILL, (again.returncode, again.stderr)
    assert load_checkpoint(ckpt)["epoch"] == 2

    # 3. Resumed from the checkpoint file, without --out: the run continues in the checkpoint's
    #    own directory and ends where the uninterrupted run ended, bit for bit.
    resumed = cli(
        "train", "--recipe", str(recipe), "--resume", str(ckpt), "--no-progress", env=_env(0)
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"run directory: {run_dir}" in resumed.stdout
    state = _final_state(run_dir)
    assert state["epoch"] == 3 and state["step"] == ref_state["step"]
    for name, tensor in ref_state["model"].items():
        assert torch.equal(tensor, state["model"][name]), f"{name} differs after resume"
    for a, b in zip(ref_state["optimizer"]["state"].values(), state["optimizer"]["state"].values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    # The metrics stream has each epoch once, even though epochs 2 and 3 ran twice.
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len([ln for ln in lines if '"kind": "epoch"' in ln]) == 3
