"""Overfit a small sample: a healthy model fits; planted faults fail in the right direction."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import pytest
import torch
from sanity_helpers import digits_cnn, digits_loader, shuffled_loader
from torch import nn

import tunekit
from tunekit.sanity import SanityError
from tunekit.testing import BNNet, ConstantNet, box_batches, tiny_fcos


def test_healthy_model_fits_the_sample_to_100_percent() -> None:
    torch.manual_seed(0)
    model = BNNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    res = tunekit.overfit_small_sample(
        model, shuffled_loader(), nn.CrossEntropyLoss(), optimizer=opt
    )
    assert res.verdict.status == "PASS", res.verdict
    assert res.outcome == "fit" and res.fitted
    assert res.steps < res.max_steps
    assert res.accuracies[-res.num_batches :] == [1.0] * res.num_batches
    assert res.losses[-1] < 0.5 * res.start_loss
    fig = res.plot()
    assert isinstance(fig, go.Figure) and len(fig.data) == 2
    assert res.plot_data()["step"] == list(range(res.steps))


def test_digits_cnn_fits_at_the_recipe_lr_and_explodes_at_lr_10() -> None:
    model, loader = digits_cnn(), digits_loader()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    fit = tunekit.overfit_small_sample(
        model, loader, nn.CrossEntropyLoss(), optimizer=opt, max_steps=100
    )
    assert fit.verdict.status == "PASS", fit.verdict
    for group in opt.param_groups:
        group["lr"] = 10.0
    res = tunekit.overfit_small_sample(
        model, loader, nn.CrossEntropyLoss(), optimizer=opt, max_steps=100
    )
    assert res.verdict.status == "FAIL"
    assert res.outcome == "exploding"
    assert "LR is too high" in res.verdict.reason
    assert "lower the learning rate" in res.verdict.fix


def test_lr_10_on_a_plain_network_goes_non_finite_and_is_exploding() -> None:
    torch.manual_seed(0)
    model = tunekit.testing.TinyMLP(in_features=64, num_classes=4)
    opt = torch.optim.SGD(model.parameters(), lr=10.0, momentum=0.9)
    res = tunekit.overfit_small_sample(
        model, shuffled_loader(), nn.CrossEntropyLoss(), optimizer=opt
    )
    assert res.outcome == "exploding" and res.verdict.status == "FAIL"
    assert res.steps < 20
    assert json_safe(res.to_dict())


def test_output_independent_of_input_fails_as_not_falling() -> None:
    model = ConstantNet(num_classes=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    res = tunekit.overfit_small_sample(
        model, shuffled_loader(), nn.CrossEntropyLoss(), optimizer=opt, max_steps=60
    )
    assert res.verdict.status == "FAIL"
    assert res.outcome == "not_falling"
    assert res.input_independent
    assert "same for every input" in res.verdict.reason
    assert res.steps == 60


def test_regularisation_is_off_during_the_probe_and_back_after() -> None:
    torch.manual_seed(0)
    model = BNNet()
    model.drop.p = 0.9  # would stop it fitting if it stayed on
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9, weight_decay=0.5)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.3)
    res = tunekit.overfit_small_sample(model, shuffled_loader(), loss_fn, optimizer=opt)
    assert res.outcome == "fit", res.verdict
    assert res.losses[-1] < 0.3  # no smoothing floor (0.3 smoothing over 4 classes floors at ~0.8)
    assert all(g["weight_decay"] == 0.5 for g in opt.param_groups)
    assert loss_fn.label_smoothing == 0.3
    assert model.drop.training


def test_fcos_detector_loss_falls_to_a_fraction_of_its_start() -> None:
    torch.manual_seed(0)
    model = tiny_fcos()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    res = tunekit.overfit_small_sample(
        model, box_batches(), optimizer=opt, num_batches=2, loss_fraction=0.2
    )
    assert res.verdict.status == "PASS", res.verdict
    assert res.accuracies == []
    assert "soft-target" in res.verdict.reason  # centerness is judged apart


def test_bad_arguments_are_one_line_errors() -> None:
    with pytest.raises(SanityError, match="num_batches"):
        tunekit.overfit_small_sample(
            BNNet(), shuffled_loader(), nn.CrossEntropyLoss(), num_batches=0
        )
    with pytest.raises(SanityError, match="loss_fraction"):
        tunekit.overfit_small_sample(
            BNNet(), shuffled_loader(), nn.CrossEntropyLoss(), loss_fraction=2
        )


def json_safe(d: dict) -> bool:
    import json

    json.dumps(d, allow_nan=False)
    return not any(isinstance(x, float) and not math.isfinite(x) for x in d["losses"])


def test_tiny_lr_fails_as_not_falling_and_says_the_lr_is_too_low() -> None:
    torch.manual_seed(0)
    model = BNNet()
    opt = torch.optim.SGD(model.parameters(), lr=1e-7)
    res = tunekit.overfit_small_sample(
        model, shuffled_loader(), nn.CrossEntropyLoss(), optimizer=opt, max_steps=40
    )
    assert res.outcome == "not_falling" and res.verdict.status == "FAIL"
    assert not res.input_independent
    assert "LR is too low" in res.verdict.reason and "raise the learning rate" in res.verdict.fix
