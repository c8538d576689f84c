"""A run killed with SIGKILL mid-epoch and resumed ends with the same weights, bit for bit."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from tunekit.engine import load_checkpoint

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


_REFERENCE: dict[str, dict] = {}


@pytest.fixture
def reference(tmp_path_factory, cli) -> tuple[dict, Path]:
    """The uninterrupted run's final state (trained once for the module)."""
    if "state" not in _REFERENCE:
        tmp = tmp_path_factory.mktemp("ref")
        recipe = _write(tmp)
        r = cli(
            "train",
            "--recipe",
            str(recipe),
            "--out",
            str(tmp / "run"),
            "--no-progress",
            env=_env(0),
        )
        assert r.returncode == 0, r.stderr
        _REFERENCE["state"] = _final_state(tmp / "run")
    return _REFERENCE["state"], Path()


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


@pytest.mark.parametrize(
    ("kill_at", "resume_from"),
    [
        (ITEMS_PER_EPOCH + 300, "dir"),  # middle of epoch 2; --out DIR --resume
        # early in epoch 3, inside a batch; --resume FILE, no --out: the run continues in the
        # checkpoint's own directory
        (2 * ITEMS_PER_EPOCH + 64 * 3 + 5, "file"),
    ],
)
def test_sigkill_mid_epoch_then_resume_is_bit_exact(reference, tmp_path, cli, kill_at, resume_from):
    ref_state, _ = reference
    recipe = _write(tmp_path)
    run_dir = tmp_path / "run"
    killed = cli(
        "train", "--recipe", str(recipe), "--out", str(run_dir), "--no-progress", env=_env(kill_at)
    )
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    epochs_done = load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"]
    assert epochs_done == kill_at // ITEMS_PER_EPOCH  # it really died mid-run, after a checkpoint

    if resume_from == "dir":
        where = ["--out", str(run_dir), "--resume"]
    else:
        where = ["--resume", str(run_dir / "checkpoints" / "last.pt")]
    resumed = cli("train", "--recipe", str(recipe), *where, "--no-progress", env=_env(0))
    assert resumed.returncode == 0, resumed.stderr
    assert f"run directory: {run_dir}" in resumed.stdout
    state = _final_state(run_dir)
    assert state["epoch"] == 3 and state["step"] == ref_state["step"]
    for name, tensor in ref_state["model"].items():
        assert torch.equal(tensor, state["model"][name]), f"{name} differs after resume"
    for a, b in zip(ref_state["optimizer"]["state"].values(), state["optimizer"]["state"].values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    # The metrics stream has each epoch once, even though epoch k ran twice.
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len([ln for ln in lines if '"kind": "epoch"' in ln]) == 3
