"""BN recalibration (EMA, SWA) leaves a frozen stage's statistics as they were loaded."""

from __future__ import annotations

import copy

import torch
from torch import nn

from tunekit.averaging import recalibrate_bn
from tunekit.models import freeze_module


def test_recalibration_skips_frozen_stages_and_redoes_the_rest():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()),
        nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.ReLU()),
    )
    freeze_module(model[0])
    averaged = copy.deepcopy(model)  # as the EMA keeps it
    before = {k: v.clone() for k, v in averaged.state_dict().items()}
    inputs = [torch.randn(8, 3, 10, 10) * 3 + 1 for _ in range(4)]
    assert recalibrate_bn(averaged, inputs) == 4
    after = averaged.state_dict()
    for key in ("0.1.running_mean", "0.1.running_var", "0.1.num_batches_tracked"):
        assert torch.equal(after[key], before[key]), key
    assert not torch.equal(after["1.1.running_mean"], before["1.1.running_mean"])
