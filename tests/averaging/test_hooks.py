"""Snapshot and SWA hooks on tiny runs: files, metrics, LR, resume, and recipe errors."""

from __future__ import annotations

import json

import pytest
import torch

from tunekit.averaging import load_snapshot
from tunekit.core import load_checkpoint
from tunekit.engine import HookBase
from tunekit.errors import ConfigError
from tunekit.run import build_trainer, train
from tunekit.testing import tiny_recipe


class Crash(HookBase):
    """Kills the run at the start of an epoch (after the previous epoch's checkpoint)."""

    def __init__(self, at_epoch: int) -> None:
        self.at_epoch = at_epoch

    def before_epoch(self) -> None:
        if self.trainer.epoch == self.at_epoch:
            raise RuntimeError("crash")


def test_snapshots_need_the_sgdr_schedule(tmp_path) -> None:
    recipe = tiny_recipe(tmp_path, averaging={"snapshots": {}})  # schedule: cosine
    with pytest.raises(
        ConfigError,
        match=r"field 'averaging.snapshots': .*schedule.name is 'cosine'; set schedule.name: sgdr",
    ):
        build_trainer(recipe, tmp_path / "run", progress=False)


def test_swa_and_snapshots_do_not_share_a_run(tmp_path) -> None:
    recipe = tiny_recipe(
        tmp_path,
        schedule={"name": "sgdr"},
        averaging={"swa": {"start_epoch": 1, "lr": 0.01}, "snapshots": {}},
    )
    with pytest.raises(
        ConfigError, match=r"field 'averaging': averaging.swa and averaging.snapshots both want"
    ):
        build_trainer(recipe, tmp_path / "run", progress=False)


def test_keep_must_cover_the_ensemble(tmp_path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"field 'averaging.snapshots(\.keep)?': .*keep \(2\) must be at least ensemble_last \(3\)",
    ):
        tiny_recipe(tmp_path, averaging={"snapshots": {"keep": 2, "ensemble_last": 3}})


def test_snapshot_files_metrics_pruning_and_resume(tmp_path) -> None:
    recipe = tiny_recipe(
        tmp_path,
        schedule={"name": "sgdr", "cycle_epochs": 1},
        train={"epochs": 4, "keep_last": 4},
        averaging={"snapshots": {"ensemble_last": 2, "keep": 2}},
    )
    summary = train(recipe, out=tmp_path / "ref", progress=False)
    snaps = tmp_path / "ref" / "snapshots"
    assert sorted(p.name for p in snaps.glob("*.pt")) == ["cycle_002.pt", "cycle_003.pt"]  # keep: 2
    index = json.loads((snaps / "index.json").read_text())["snapshots"]
    assert [r["cycle"] for r in index] == [2, 3] and [r["step"] for r in index] == [
        18,
        24,
    ]  # 6 steps an epoch
    last = load_snapshot(snaps / "cycle_003.pt")
    state = load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.pt")
    for k, v in state["model"].items():  # the last cycle ends with the run
        assert torch.equal(last["model"][k], v), k
    history = state["history"]
    assert "snapshots/val/top1" not in history[0]  # one snapshot: nothing to ensemble yet
    assert all("snapshots/val/loss" in h and h["snapshots/members"] == 2 for h in history[1:])
    assert summary["final"]["snapshot/val/top1"] == summary["final"]["val/top1"]

    # A run that dies after epoch 2 and is resumed in its directory ends with the
    # same snapshots and the same ensemble numbers.
    with pytest.raises(RuntimeError, match="crash"):
        train(recipe, out=tmp_path / "resumed", hooks=[Crash(at_epoch=2)], progress=False)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["epoch"] == 2
    train(recipe, out=tmp_path / "resumed", resume="auto", progress=False)
    again = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert again["history"][-1]["snapshots/val/loss"] == history[-1]["snapshots/val/loss"]
    for k, v in load_snapshot(tmp_path / "resumed" / "snapshots" / "cycle_003.pt")["model"].items():
        assert torch.equal(last["model"][k], v), k


def test_swa_averages_from_its_epoch_with_its_own_lr(tmp_path) -> None:
    recipe = tiny_recipe(
        tmp_path,
        train={"epochs": 4, "keep_last": 4},
        averaging={"swa": {"start_epoch": 2, "lr": 0.01, "anneal_epochs": 0.5}},
    )
    summary = train(recipe, out=tmp_path / "ref", progress=False)
    state = load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.pt")
    h = state["history"]
    assert (
        "swa/val/top1" not in h[1] and h[2]["swa/n_averaged"] == 1 and h[3]["swa/n_averaged"] == 2
    )
    assert h[1]["lr"] > 0.01  # the recipe's cosine before the SWA phase
    assert h[3]["lr"] == pytest.approx(0.01)  # annealed to the SWA LR and held there
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01)
    assert 0.0 <= summary["final"]["swa/val/top1"] <= 1.0
    # The average is the mean of the weights after epochs 3 and 4.
    e3 = load_checkpoint(tmp_path / "ref" / "checkpoints" / "epoch_003.pt")["model"]
    avg = state["hooks"]["SwaHook"]["model"]
    w = "fc.weight"
    torch.testing.assert_close(avg[f"module.{w}"], (e3[w] + state["model"][w]) / 2)
    # Resumed inside the SWA phase: bit for bit.
    train(
        recipe,
        out=tmp_path / "resumed",
        resume=str(tmp_path / "ref" / "checkpoints" / "epoch_003.pt"),
        progress=False,
    )
    again = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    for k, v in avg.items():
        assert torch.equal(again["hooks"]["SwaHook"]["model"][k], v), k
    for k, v in state["model"].items():
        assert torch.equal(again["model"][k], v), k
