"""LR multipliers by module-name prefix and layer-wise LR decay, on top of the schedule."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from tunekit.config import ModelConfig, OptimConfig, ScheduleConfig, load_recipe
from tunekit.engine import HookBase, build_optimizer, build_scheduler, make_lr_factor
from tunekit.errors import ConfigError
from tunekit.models import build_model, stage_modules


class Detectorish(nn.Module):
    """A backbone with a norm layer and a head, named as detectors name them."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.ReLU())
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).mean(dim=(2, 3)))


def _mults(opt: torch.optim.Optimizer, model: nn.Module) -> dict[str, float]:
    """Each parameter's group LR divided by the base LR (the multiplier-1 group's LR)."""
    names = {id(p): n for n, p in model.named_parameters()}
    base = next(g["lr"] for g in opt.param_groups if g["lr_mult"] == 1.0)
    return {names[id(p)]: g["lr"] / base for g in opt.param_groups for p in g["params"]}


def test_backbone_gets_exactly_a_tenth_of_the_head_lr_at_every_step_warmup_included():
    model = Detectorish()
    cfg = OptimConfig(lr=0.2, weight_decay=1e-4, param_groups={"backbone": 0.1})
    opt = build_optimizer(model, cfg, 64)
    schedule = ScheduleConfig(name="cosine", warmup_epochs=1.0, warmup_factor=0.01)
    steps_per_epoch, epochs = 5, 3
    sched = build_scheduler(opt, schedule, steps_per_epoch, epochs)
    factor = make_lr_factor(schedule, steps_per_epoch, epochs)
    backbone = {id(p) for p in model.backbone.parameters()}
    for step in range(steps_per_epoch * epochs):
        lrs: dict[str, set[float]] = {"backbone": set(), "head": set()}
        for g in opt.param_groups:
            for p in g["params"]:
                lrs["backbone" if id(p) in backbone else "head"].add(g["lr"])
        (head,), (back,) = lrs["head"], lrs["backbone"]  # one LR per part, decayed or not
        assert head == pytest.approx(0.2 * factor(step), rel=1e-12)
        assert back / head == pytest.approx(0.1, rel=1e-12), f"step {step}"
        opt.step()
        sched.step()
    assert factor(0) == pytest.approx(0.01)  # the warmup was part of it


class _GroupLRs(HookBase):
    def __init__(self) -> None:
        self.rows: list[tuple[float, dict[float, float]]] = []

    def before_step(self) -> None:  # the LR the coming step uses
        t = self.trainer
        self.rows.append((t.lr, {g["lr_mult"]: g["lr"] for g in t.optimizer.param_groups}))


def test_recipe_param_groups_scale_the_schedule_in_training(write_recipe, tmp_path):
    from tunekit.run import build_trainer

    recipe = write_recipe(
        data={"image_size": 12, "train_subset": 128, "val_subset": 32},
        model={"name": "small_cnn", "width": 4, "norm": "gn"},
        optim={"param_groups": {"layer1": 0.1, "layer2": 0.1}, "decay_norm_and_bias": False},
        schedule={"name": "cosine", "warmup_epochs": 1.0, "warmup_factor": 0.1},
        train={"device": "cpu", "epochs": 3, "batch_size": 32, "max_steps_per_epoch": 3},
        # SWA sets the LR from epoch 2 on: the multipliers hold under it too.
        averaging={"swa": {"start_epoch": 2, "lr": 0.05, "anneal_epochs": 0.5}},
        diagnostics={"enabled": False},
    )
    hook = _GroupLRs()
    trainer, _ = build_trainer(load_recipe(recipe), tmp_path / "run", hooks=[hook], progress=False)
    groups = {(g["lr_mult"], g["weight_decay"] > 0) for g in trainer.optimizer.param_groups}
    # The decay/no-decay split holds inside each multiplier.
    assert groups == {(1.0, True), (1.0, False), (0.1, True), (0.1, False)}
    trainer.train()
    factor = make_lr_factor(load_recipe(recipe).schedule, 3, 3)
    assert len(hook.rows) == 9
    for step, (base, by_mult) in enumerate(hook.rows):
        if step < 6:  # the recipe's schedule (SWA's from step 6)
            assert base == pytest.approx(0.1 * factor(step), rel=1e-12)  # Trainer.lr: the base
        assert by_mult[1.0] == pytest.approx(base, rel=1e-12)
        assert by_mult[0.1] / by_mult[1.0] == pytest.approx(0.1, rel=1e-12), f"step {step}"
    assert hook.rows[-1][0] == pytest.approx(0.05)  # annealed to SWA's LR


def test_longest_prefix_wins_and_prefixes_match_whole_names():
    model = build_model(ModelConfig(name="small_cnn", width=4, norm="gn"), 10, 1)
    cfg = OptimConfig(param_groups={"layer1": 0.1, "layer1.conv1": 0.5, "stem": 2.0})
    mults = _mults(build_optimizer(model, cfg, 64), model)
    assert mults["layer1.conv1.weight"] == pytest.approx(0.5)
    assert mults["layer1.conv2.weight"] == pytest.approx(0.1)
    assert mults["stem.0.weight"] == pytest.approx(2.0)
    assert mults["layer2.conv1.weight"] == mults["fc.weight"] == 1.0
    with pytest.raises(ConfigError) as err:  # "layer" is not a name part of "layer1"
        build_optimizer(model, OptimConfig(param_groups={"layer": 0.1}), 64)
    assert err.value.field == "optim.param_groups.layer"
    assert "matches no parameter" in err.value.message and "layer1" in err.value.message


def test_layer_decay_multiplies_stages_from_the_head_backwards():
    cfg_model = ModelConfig(name="small_cnn", width=4, norm="gn")
    model = build_model(cfg_model, 10, 1)
    stages = stage_modules(cfg_model)
    assert list(stages) == ["stem", "layer1", "layer2", "layer3"]
    cfg = OptimConfig(layer_decay=0.5, param_groups={"layer1": 0.1})
    mults = _mults(build_optimizer(model, cfg, 64, stages=stages), model)
    assert mults["fc.weight"] == 1.0
    assert mults["layer3.conv1.weight"] == pytest.approx(0.5)
    assert mults["layer2.conv1.weight"] == pytest.approx(0.25)
    assert mults["layer1.conv1.weight"] == pytest.approx(0.125 * 0.1)  # both multiply
    assert mults["stem.0.weight"] == pytest.approx(0.0625)
    with pytest.raises(ConfigError, match="no named stages") as err:
        build_optimizer(model, OptimConfig(layer_decay=0.5), 64)  # stages unknown
    assert err.value.field == "optim.layer_decay"


def test_frozen_parameters_never_enter_the_optimizer():
    model = build_model(ModelConfig(name="small_cnn", width=4, freeze_to="layer1"), 10, 1)
    opt = build_optimizer(model, OptimConfig(param_groups={"layer1": 0.1}), 64)
    inside = {id(p) for g in opt.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in inside) == p.requires_grad, name
    assert all(g["lr_mult"] == 1.0 for g in opt.param_groups)  # layer1 is frozen: no 0.1 group


def test_the_lr_range_test_keeps_the_multipliers():
    from tunekit.sanity._state import set_hyper

    model = Detectorish()
    opt = build_optimizer(model, OptimConfig(param_groups={"backbone": 0.1}), 64)
    set_hyper(opt, lr=1.0)
    assert sorted(g["lr"] for g in opt.param_groups) == pytest.approx([0.1, 0.1, 1.0, 1.0])


@pytest.mark.parametrize("nproc", [None, "2"])
def test_a_prefix_that_matches_nothing_is_one_line(write_recipe, tmp_path, capsys, nproc):
    from tunekit.cli import main

    recipe = write_recipe(
        data={"image_size": 12, "train_subset": 128, "val_subset": 32},
        model={"name": "small_cnn", "width": 4, "norm": "gn"},
        optim={"param_groups": {"backbone": 0.1}},
        train={"device": "cpu", "epochs": 1, "batch_size": 32},
    )
    args: list[Any] = ["train", "--recipe", str(recipe), "--out", str(tmp_path / "run")]
    rc = main(args + (["--nproc", nproc] if nproc else []))
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "optim.param_groups.backbone" in lines[0] and "matches no parameter" in lines[0]
    assert "stem, layer1, layer2, layer3" in lines[0] and str(recipe) in lines[0]
