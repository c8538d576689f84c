"""TunekitCallback on lightning.Trainer: the watched run's records, its guards, and DDP on CPU."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("lightning")

from _lightning_models import Net, loaders, trainer

from tunekit.diagnostics import NonFiniteError
from tunekit.report import diagnose

HERE = Path(__file__).parent


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_one_process_records_what_the_trainer_records(tmp_path: Path) -> None:
    torch.manual_seed(0)
    train, val = loaders()
    trainer(str(tmp_path)).fit(Net(), train, val)
    recs = _records(tmp_path)
    steps = [r for r in recs if r["kind"] == "step"]
    epochs = [r for r in recs if r["kind"] == "epoch"]
    assert [r["step"] for r in steps] == list(range(1, 17))
    assert steps[7]["epoch"] == 1.0  # 8 steps an epoch, known from the trainer
    measured = [r for r in steps if "update_ratio/mid" in r]
    assert [r["step"] for r in measured] == list(range(2, 17, 2))
    assert all(1e-5 < r["update_ratio/mid"] < 1 and r["grad_norm/mid"] > 0 for r in measured)
    assert any("act/act/dead" in r for r in steps)
    assert all(r["train/step_loss"] > 0 for r in steps)
    assert [e["epoch"] for e in epochs] == [1.0, 2.0]
    assert {"val/loss", "val/top1", "train/loss"} <= set(epochs[-1])
    assert isinstance(diagnose(tmp_path), list)
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 16


def test_nan_at_step_k_is_caught_at_k_naming_the_layer(tmp_path: Path) -> None:
    torch.manual_seed(0)
    train, val = loaders()
    model = Net(nan_at=3)
    with pytest.raises(NonFiniteError) as info:
        trainer(str(tmp_path), tensorboard=False).fit(model, train, val)
    assert (info.value.step, info.value.layer) == (3, "mid")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    events = [r for r in _records(tmp_path) if r["kind"] == "event"]
    assert [(e["event"], e["step"], e["layer"]) for e in events] == [("non_finite", 3, "mid")]


def _ddp(out: Path, *args: str) -> None:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]), str(HERE)]),
    }
    subprocess.run(
        [sys.executable, str(HERE / "_lightning_ddp.py"), str(out), *args],
        check=True,
        env=env,
        timeout=240,
        capture_output=True,
    )


@pytest.mark.slow  # two Lightning processes start in about a minute on a loaded 2-core machine
def test_ddp_two_cpu_ranks_write_once_and_stop_at_the_same_step(tmp_path: Path) -> None:
    _ddp(tmp_path, "7")
    recs = _records(tmp_path)
    # 128 samples over 2 ranks of 16-sample batches: 4 steps an epoch, written by rank 0 alone.
    assert [r["step"] for r in recs if r["kind"] == "step"] == [1, 2, 3, 4, 5, 6]
    assert [r["epoch"] for r in recs if r["kind"] == "epoch"] == [1.0]
    assert any("update_ratio/fc1" in r for r in recs)
    stops = [json.loads((tmp_path / f"stopped_rank{r}.json").read_text()) for r in (0, 1)]
    # Under DDP the forward is not re-run (collective layers would wait for the other rank):
    # the layer named is the first whose gradient is non-finite.
    assert stops == [{"step": 7, "layer": "fc1"}] * 2
    stopped = [r["step"] for r in recs if r["kind"] == "event" and r["event"] == "non_finite"]
    assert stopped == [7]


def test_sanity_probes_take_a_lightning_module_and_its_loader() -> None:
    """A LightningModule is an nn.Module: the probes take it, its optimizer and its loader as is."""
    from tunekit.sanity import check_initial_loss, lr_range_test, overfit_small_sample

    torch.manual_seed(0)
    module = Net()
    train, _ = loaders()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    init = check_initial_loss(module, train, torch.nn.CrossEntropyLoss())
    assert init.expected == pytest.approx(math.log(4)) and init.verdict
    optimizer = module.configure_optimizers()
    found = lr_range_test(module, optimizer, train, torch.nn.CrossEntropyLoss(), num_iter=30)
    assert found.suggestion is not None or found.reason
    fit = overfit_small_sample(module, train, torch.nn.CrossEntropyLoss(), optimizer=optimizer)
    assert fit.verdict
    # Every probe restores what it changed.
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
