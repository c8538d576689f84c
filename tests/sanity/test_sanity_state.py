"""Every probe leaves model, optimizer, RNGs and the loader's generator exactly as they were."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from sanity_helpers import shuffled_loader
from torch import nn

from tunekit.core import rng_state
from tunekit.sanity import (
    check_initial_loss,
    check_learning_rate,
    cross_check_lrs,
    lr_range_test,
    overfit_small_sample,
    update_ratio,
)
from tunekit.testing import BNNet

CE = nn.CrossEntropyLoss(label_smoothing=0.1)

PROBES: dict[str, Callable[..., Any]] = {
    "initial_loss": lambda m, o, ld: check_initial_loss(m, ld, CE, num_classes=4),
    "overfit": lambda m, o, ld: overfit_small_sample(
        m, ld, CE, optimizer=o, num_batches=2, max_steps=15
    ),
    "lr_range_test": lambda m, o, ld: lr_range_test(m, o, ld, CE, num_iter=20),
    "cross_check": lambda m, o, ld: cross_check_lrs(m, o, ld, CE, lrs=[1.0, 0.1], num_iter=10),
    "update_ratio": lambda m, o, ld: update_ratio(m, o, ld, CE, lr=0.1, steps=4),
    "check_learning_rate": lambda m, o, ld: check_learning_rate(
        m, o, ld, CE, num_iter=15, cross_check_iter=10, candidates=[0.1], ratio_steps=2
    ),
}


def _setup() -> tuple[nn.Module, torch.optim.Optimizer, Any]:
    torch.manual_seed(0)
    model = BNNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loader = shuffled_loader()
    # Two real steps first, so the optimizer has momentum buffers to get wrong.
    for x, y in list(loader)[:2]:
        opt.zero_grad()
        CE(model(x), y).backward()
        opt.step()
    model.eval()  # an unusual mode the probes must put back
    model.drop.train()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    return model, opt, loader


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _state(model: nn.Module, opt: torch.optim.Optimizer, loader: Any) -> dict[str, Any]:
    return {
        "model": copy.deepcopy(model.state_dict()),
        "optimizer": copy.deepcopy(opt.state_dict()),
        "rng": rng_state(),
        "loader": loader.generator.get_state(),
        "modes": [m.training for m in model.modules()],
        "grads": [p.grad.clone() if p.grad is not None else None for p in model.parameters()],
    }


@pytest.mark.parametrize("probe", list(PROBES))
def test_probe_restores_everything_bit_for_bit(probe: str) -> None:
    model, opt, loader = _setup()
    before = _state(model, opt, loader)
    PROBES[probe](model, opt, loader)
    after = _state(model, opt, loader)
    for key in before:
        assert _same(before[key], after[key]), f"{probe} changed the {key} state"

    # And the step that follows is the step it would have been without the probe
    # (same batch from the loader, same dropout mask from the global RNG).
    _step(model, opt, loader)
    twin, twin_opt, twin_loader = _setup()
    _step(twin, twin_opt, twin_loader)
    assert _same(model.state_dict(), twin.state_dict())
    assert _same(opt.state_dict(), twin_opt.state_dict())


def _step(model: nn.Module, opt: torch.optim.Optimizer, loader: Any) -> None:
    model.train()
    x, y = next(iter(loader))
    opt.zero_grad()
    CE(model(x), y).backward()
    opt.step()


def test_state_comparison_can_fail() -> None:
    model, opt, loader = _setup()
    before = _state(model, opt, loader)
    _step(model, opt, loader)
    after = _state(model, opt, loader)
    assert not any(_same(before[k], after[k]) for k in ("model", "optimizer", "rng", "loader"))


def test_probe_restores_state_when_it_raises() -> None:
    model, opt, loader = _setup()
    before = _state(model, opt, loader)

    def bad_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        bad_loss.calls += 1  # type: ignore[attr-defined]
        if bad_loss.calls > 3:  # type: ignore[attr-defined]
            raise RuntimeError("boom")
        return nn.functional.cross_entropy(logits, y)

    bad_loss.calls = 0  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="boom"):
        lr_range_test(model, opt, loader, bad_loss, num_iter=10)
    after = _state(model, opt, loader)
    for key in before:
        assert _same(before[key], after[key]), f"the failed probe changed the {key} state"
