"""SGD, AdamW, Adam (coupled L2), RMSprop and Adagrad from the recipe, with their own settings."""

from __future__ import annotations

import inspect

import pytest
import torch

from tunekit.config import OptimConfig
from tunekit.config._recipe import OPTIMIZER_SETTINGS
from tunekit.engine import build_optimizer
from tunekit.engine._optim import OPTIMIZERS
from tunekit.testing import TinyMLP

TORCH = {
    "sgd": torch.optim.SGD,
    "adamw": torch.optim.AdamW,
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}


def test_every_name_has_a_builder_and_its_settings_are_torch_keywords():
    assert set(OPTIMIZERS) == set(OPTIMIZER_SETTINGS) == set(TORCH)
    for name, settings in OPTIMIZER_SETTINGS.items():
        accepted = inspect.signature(TORCH[name]).parameters
        assert set(settings) <= set(accepted), name
        for key, default in settings.items():  # torch's defaults, SGD's momentum aside
            if (name, key) != ("sgd", "momentum"):
                assert accepted[key].default == default, (name, key)


@pytest.mark.parametrize(
    ("name", "given"),
    [
        ("sgd", {"momentum": 0.8, "nesterov": True}),
        ("adamw", {"betas": (0.8, 0.99), "eps": 1e-6}),
        ("adam", {"betas": (0.8, 0.99), "eps": 1e-6}),
        ("rmsprop", {"alpha": 0.9, "momentum": 0.5, "centered": True, "eps": 1e-3}),
        ("adagrad", {"lr_decay": 1e-3, "initial_accumulator_value": 0.1, "eps": 1e-8}),
    ],
)
def test_each_optimizer_is_torchs_own_with_the_recipes_settings(name, given):
    model = TinyMLP()
    opt = build_optimizer(model, OptimConfig(name=name, lr=0.01, weight_decay=1e-3, **given), 64)
    assert type(opt) is TORCH[name]
    for g in opt.param_groups:
        for key, value in given.items():
            assert g[key] == value, key
    defaults = build_optimizer(model, OptimConfig(name=name), 64).param_groups[0]
    for key, value in OPTIMIZER_SETTINGS[name].items():
        assert defaults[key] == value, key
    x, y = torch.randn(8, 64), torch.arange(8) % 4
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()  # it runs


def test_rmsprop_takes_no_sgd_momentum_by_default():
    opt = build_optimizer(TinyMLP(), OptimConfig(name="rmsprop"), 64)
    assert opt.param_groups[0]["momentum"] == 0.0
    assert build_optimizer(TinyMLP(), OptimConfig(), 64).param_groups[0]["momentum"] == 0.9


def test_adam_weight_decay_is_coupled_l2_and_adamw_is_decoupled():
    # One step on a loss of zero: the gradient is the L2 term alone for Adam, which
    # normalises it to a step of about lr; AdamW shrinks the weight by lr * wd.
    lr, wd = 0.01, 0.1
    for name, expected in (("adam", lr), ("adamw", lr * wd)):
        w = torch.nn.Parameter(torch.full((4, 4), 2.0))  # a matrix: decayed by default
        model = torch.nn.Module()
        model.w = w
        opt = build_optimizer(model, OptimConfig(name=name, lr=lr, weight_decay=wd), 64)
        w.grad = torch.zeros_like(w)
        opt.step()
        moved = float((2.0 - w.detach()).mean())
        assert moved == pytest.approx(expected * (2.0 if name == "adamw" else 1.0), rel=1e-3)


@pytest.mark.parametrize(
    ("optim", "field", "words"),
    [
        (
            {"name": "adam", "momentum": 0.9},
            "optim.momentum",
            "adam takes no momentum; its own settings are betas, eps",
        ),
        ({"name": "sgd", "alpha": 0.9}, "optim.alpha", "use name: rmsprop"),
        ({"name": "adagrad", "betas": [0.9, 0.99]}, "optim.betas", "lr_decay"),
        ({"name": "lamb"}, "optim.name", "'rmsprop' or 'adagrad'"),
    ],
)
def test_a_setting_of_another_optimizer_is_one_line(
    write_recipe, tmp_path, capsys, optim, field, words
):
    from tunekit.cli import main

    recipe = write_recipe(base=None, optim={"lr": 0.01, **optim})
    rc = main(["train", "--recipe", str(recipe), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"field '{field}'" in lines[0] and words in lines[0] and str(recipe) in lines[0]
