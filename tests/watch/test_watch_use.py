"""tunekit.watch on a plain loop: mistakes get one line, non-finite values name the step and layer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tunekit
from tunekit.diagnostics import NonFiniteError
from tunekit.errors import TunekitError
from tunekit.testing import TinyMLP, loader, random_classification

FAST = {"progress": False, "tensorboard": False, "activations": "off"}


class Poisoned(nn.Module):
    """Three layers; the middle one's output becomes NaN from step ``at`` on (counted in forwards)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.fc1, self.mid, self.fc2 = nn.Linear(64, 16), nn.Linear(16, 16), nn.Linear(16, 4)
        self.at, self.calls = at, 0
        self.mid.register_forward_hook(self._poison)

    def _poison(self, _m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            self.calls += 1
        return out * math.nan if self.calls >= self.at else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.mid(torch.relu(self.fc1(x.flatten(1))))))


def _train(model: nn.Module, opt: torch.optim.Optimizer, monitor: object, steps: int) -> None:
    data = loader(random_classification(n=16 * steps), batch_size=16)
    for x, y in data:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        monitor.step(loss)  # type: ignore[attr-defined]


def test_a_model_outside_the_optimizer_is_one_line(tmp_path: Path) -> None:
    model, other = TinyMLP(), TinyMLP()
    with pytest.raises(TunekitError) as info:
        tunekit.watch(model, torch.optim.SGD(other.parameters(), lr=0.1), out=tmp_path, **FAST)
    message = str(info.value)
    assert "\n" not in message and "optimizer" in message and "model.parameters()" in message


def test_step_before_any_optimizer_step_is_one_line(tmp_path: Path) -> None:
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with tunekit.watch(model, opt, out=tmp_path, **FAST) as monitor:
        loss = F.cross_entropy(model(torch.randn(4, 64)), torch.zeros(4, dtype=torch.long))
        loss.backward()
        with pytest.raises(TunekitError, match=r"optimizer.step\(\) has not run") as info:
            monitor.step(loss)
    assert "\n" not in str(info.value) and "step 1" in str(info.value)


def test_a_bad_diagnostics_option_is_one_line(tmp_path: Path) -> None:
    model = TinyMLP()
    with pytest.raises(TunekitError, match="interval") as info:
        tunekit.watch(model, torch.optim.SGD(model.parameters(), lr=0.1), out=tmp_path, interval=0)
    assert "\n" not in str(info.value)


def test_nan_at_step_k_stops_before_the_step_naming_the_layer(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Poisoned(at=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = tunekit.watch(model, opt, out=tmp_path, **FAST)
    with pytest.raises(NonFiniteError) as info:
        _train(model, opt, monitor, steps=5)
    monitor.close()
    err = info.value
    assert (err.step, err.layer, err.taken) == (3, "mid", False)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the step was not taken
    events = [
        json.loads(line)
        for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
        if '"event"' in line
    ]
    assert [(e["event"], e["step"], e["layer"]) for e in events] == [("non_finite", 3, "mid")]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 2 and "step 3" in summary["stop_reason"]


def test_warn_records_every_bad_step_and_goes_on(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Poisoned(at=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with (
        pytest.warns(RuntimeWarning, match="step 2"),
        tunekit.watch(model, opt, out=tmp_path, on_non_finite="warn", **FAST) as monitor,
    ):
        _train(model, opt, monitor, steps=4)
    assert [e.step for e in monitor.errors][:1] == [2]
    assert monitor.host.step == 4


def test_between_gradient_checks_a_bad_output_still_stops_its_own_step(tmp_path: Path) -> None:
    # Gradients are checked at steps 5 and 10 only; step 3's forward goes NaN.
    torch.manual_seed(0)
    model = Poisoned(at=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = tunekit.watch(model, opt, out=tmp_path, gradient_check_interval=5, **FAST)
    with pytest.raises(NonFiniteError) as info:
        _train(model, opt, monitor, steps=5)
    monitor.close()
    err = info.value
    assert (err.step, err.where, err.layer, err.taken) == (3, "output", "mid", False)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the step was not taken
