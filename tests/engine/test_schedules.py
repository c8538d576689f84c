"""Schedules are pure functions of the step; check their shape at known points."""

from __future__ import annotations

import math

import pytest
import torch

from tunekit.config import OptimConfig, ScheduleConfig
from tunekit.engine import (
    build_optimizer,
    build_scheduler,
    effective_lr,
    make_lr_factor,
    param_groups,
)
from tunekit.engine._schedules import sgdr_cycle
from tunekit.errors import ConfigError
from tunekit.testing import TinyCNN

SPE = 10  # steps per epoch


def f(name: str, step: int, epochs: int = 10, **kw) -> float:
    return make_lr_factor(ScheduleConfig(name=name, **kw), SPE, epochs)(step)


def test_constant_and_warmup():
    assert f("constant", 0) == 1.0 and f("constant", 99) == 1.0
    assert f("constant", 0, warmup_epochs=2, warmup_factor=0.01) == pytest.approx(0.01)
    assert f("constant", 10, warmup_epochs=2, warmup_factor=0.01) == pytest.approx(0.505)
    assert f("constant", 20, warmup_epochs=2) == 1.0


def test_step_milestones():
    kw = {"milestones": [3, 6], "gamma": 0.1}
    assert f("step", 29, **kw) == 1.0
    assert f("step", 30, **kw) == pytest.approx(0.1)
    assert f("step", 60, **kw) == pytest.approx(0.01)


def test_cosine_and_linear_reach_the_floor():
    assert f("cosine", 50) == pytest.approx(0.5)
    assert f("cosine", 100, min_lr_ratio=0.1) == pytest.approx(0.1)
    assert f("linear", 50) == pytest.approx(0.5)
    assert f("linear", 100) == pytest.approx(0.0)


def test_inverse_sqrt():
    assert f("inverse_sqrt", 10) == pytest.approx(1.0)
    assert f("inverse_sqrt", 40) == pytest.approx(0.5)


def test_sgdr_restarts_at_each_cycle():
    kw = {"cycle_epochs": 2, "cycle_mult": 2}
    assert [sgdr_cycle(e, 2, 2)[0] for e in (0, 1.9, 2, 5.9, 6, 13.9, 14)] == [0, 0, 1, 1, 2, 2, 3]
    assert f("sgdr", 0, **kw) == 1.0
    assert f("sgdr", 19, **kw) < 0.01  # end of the first cycle
    assert f("sgdr", 20, **kw) == 1.0  # restart
    assert f("sgdr", 40, **kw) == pytest.approx(0.5)  # middle of the 4-epoch second cycle


def test_unknown_schedule_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"did you mean 'cosine'.*constant, cosine"):
        make_lr_factor(ScheduleConfig(name="cosin"), SPE, 10)


def test_linear_scaling_rule_and_groups():
    cfg = OptimConfig(lr=0.1, lr_per_256=True, weight_decay=1e-4)
    assert effective_lr(cfg, 512) == pytest.approx(0.2)
    model = TinyCNN()
    groups = param_groups(model, 1e-4, decay_norm_and_bias=False)
    decayed = {id(p) for p in groups[0]["params"]}
    assert id(model.conv1.weight) in decayed and id(model.conv1.bias) not in decayed
    assert groups[1]["weight_decay"] == 0.0
    opt = build_optimizer(model, cfg, 512)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2)


def test_scheduler_steps_per_iteration_and_restores():
    model = TinyCNN()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = build_scheduler(opt, ScheduleConfig(name="cosine"), SPE, 2)
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    state = sched.state_dict()
    opt2 = torch.optim.SGD(model.parameters(), lr=1.0)
    sched2 = build_scheduler(opt2, ScheduleConfig(name="cosine"), SPE, 2)
    sched2.load_state_dict(state)
    assert sched2.last_epoch == 10
