"""A plain PyTorch loop under tunekit.watch writes what the trainer writes for the same run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import tunekit
from tunekit.cli import main
from tunekit.config import DiagnosticsConfig
from tunekit.core import DistInfo
from tunekit.diagnostics import diagnostic_hooks
from tunekit.engine import MetricsWriter, Trainer
from tunekit.report import diagnose, load_run, report_data
from tunekit.tasks import ClassificationTask
from tunekit.testing import TinyMLP, loader, random_classification

EPOCHS = 4
# Small intervals: a few measurements of every kind in 16 steps.
OPTIONS: dict[str, Any] = {
    "interval": 2,
    "activation_interval": 3,
    "histogram_interval": 4,
    "tensorboard": True,
}


def _setup() -> tuple[torch.nn.Module, torch.optim.Optimizer, Any, Any]:
    torch.manual_seed(0)
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train = loader(random_classification(n=64, seed=0), batch_size=16)
    val = loader(random_classification(n=32, seed=1), batch_size=16)
    return model, opt, train, val


def _trainer_run(out: Path) -> None:
    model, opt, train, val = _setup()
    hooks = [
        MetricsWriter(out / "metrics.jsonl"),
        *diagnostic_hooks(DiagnosticsConfig(**OPTIONS), out),
    ]
    Trainer(
        model, opt, train, ClassificationTask(4), epochs=EPOCHS, val_loader=val, hooks=hooks
    ).train()


def _plain_run(out: Path) -> None:
    model, opt, train, val = _setup()
    task = ClassificationTask(4)
    with tunekit.watch(
        model, opt, out=out, steps_per_epoch=len(train), progress=False, **OPTIONS
    ) as monitor:
        for _ in range(EPOCHS):
            model.train()
            for x, y in train:
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                monitor.step(loss)
            model.eval()
            monitor.epoch(task.evaluate(model, val, DistInfo()))


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("equal")
    _trainer_run(root / "trainer")
    _plain_run(root / "plain")
    return root / "trainer", root / "plain"


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return bool(a == b)


def test_step_records_equal_the_trainers(runs: tuple[Path, Path]) -> None:
    trainer, plain = (_records(d / "metrics.jsonl") for d in runs)
    steps_t = [r for r in trainer if r["kind"] == "step"]
    steps_p = [r for r in plain if r["kind"] == "step"]
    assert len(steps_t) == EPOCHS * 4
    assert [r["step"] for r in steps_p] == [r["step"] for r in steps_t]
    measured = 0
    for a, b in zip(steps_t, steps_p):
        keys = {k for k in a if not k.startswith("throughput/")}
        assert keys == {k for k in b if not k.startswith("throughput/")}, a["step"]
        for k in keys:
            assert _close(a[k], b[k]), (a["step"], k, a[k], b[k])
        measured += any(k.startswith("update_ratio/") for k in a)
    assert measured == EPOCHS * 4 // 2
    assert any(k.startswith("act/") for r in steps_t for k in r)


def test_epoch_records_and_verdicts_equal_the_trainers(runs: tuple[Path, Path]) -> None:
    trainer, plain = (_records(d / "metrics.jsonl") for d in runs)
    epochs_t = [r for r in trainer if r["kind"] == "epoch"]
    epochs_p = [r for r in plain if r["kind"] == "epoch"]
    assert len(epochs_p) == EPOCHS
    for a, b in zip(epochs_t, epochs_p):
        for k in ("epoch", "step", "train/loss", "lr", "val/loss", "val/top1"):
            assert _close(float(a[k]), float(b[k])), (k, a[k], b[k])
    verdicts = [[v.code for v in diagnose(d)] for d in runs]
    assert verdicts[0] == verdicts[1]
    # The report reads the watched directory as a run: the same ratios in its heatmap.
    heat = [report_data(load_run(d)).heatmap for d in runs]
    assert heat[0].layers == heat[1].layers and heat[0].steps == heat[1].steps


def test_report_and_diagnose_commands_read_the_watched_directory(
    runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = []
    for d in runs:
        assert main(["report", str(d)]) == 0
        capsys.readouterr()
        assert main(["diagnose", str(d), "--json"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
        assert (d / "report.html").stat().st_size > 10_000
    assert [v["code"] for v in outputs[0]] == [v["code"] for v in outputs[1]]
    assert (Path(runs[1]) / "summary.json").is_file()
    assert any((Path(runs[1]) / "tb").iterdir())
