"""A linear probe is one: frozen stages stay bit for bit as loaded (BN statistics included) however
the trainer sets the model's mode, and only the head is in the optimizer."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tunekit.config import ModelConfig, Recipe
from tunekit.detection import build_detector
from tunekit.models import build_model, freeze_module, frozen_modules, is_frozen, unfreeze_module
from tunekit.run import build_trainer


def _pretrained(path: Path) -> dict[str, torch.Tensor]:
    """A small_cnn state dict whose BN statistics are not the initial 0 and 1."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="small_cnn", width=4), 10, 1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.num_batches_tracked.fill_(1000)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(state, path)
    return state


def _recipe(tmp_path: Path, **model: Any) -> Recipe:
    return Recipe.model_validate(
        {
            "name": "probe",
            "output_dir": str(tmp_path / "runs"),
            "data": {"name": "digits", "image_size": 8, "train_subset": 96, "val_subset": 32},
            "model": {"name": "small_cnn", "width": 4, **model},
            "optim": {"name": "sgd", "lr": 0.1, "weight_decay": 1e-3, "decay_norm_and_bias": True},
            "train": {"epochs": 2, "batch_size": 32, "device": "cpu"},
            "diagnostics": {"enabled": False},
        }
    )


def test_a_linear_probe_leaves_the_backbone_bit_identical(tmp_path: Path) -> None:
    start = _pretrained(tmp_path / "pretrained.pt")
    recipe = _recipe(tmp_path, weights=str(tmp_path / "pretrained.pt"), freeze_to="layer3")
    trainer, _ = build_trainer(recipe, tmp_path / "run", progress=False)
    model = trainer.module
    # Only the head is in the optimizer.
    in_optimizer = [p for g in trainer.optimizer.param_groups for p in g["params"]]
    assert {id(p) for p in in_optimizer} == {id(p) for p in model.fc.parameters()}
    assert len(in_optimizer) == 2
    head_before = model.fc.weight.detach().clone()
    trainer.train()  # model.train() every epoch, model.train(was_training) after each evaluation
    assert trainer.step == 6
    after = model.state_dict()
    backbone = [k for k in start if not k.startswith("fc.")]
    assert any(k.endswith("running_mean") for k in backbone)
    for k in backbone:  # weights, BN running statistics and their batch counts
        assert torch.equal(after[k], start[k]), k
    # The head trained; the frozen stages are in eval mode while the model is in training mode.
    assert not torch.equal(after["fc.weight"], head_before)
    assert model.training and model.fc.training
    assert all(
        not m.training
        for s in ("stem", "layer1", "layer2", "layer3")
        for m in getattr(model, s).modules()
    )
    assert frozen_modules(model) == ["stem", "layer1", "layer2", "layer3"]


def test_fine_tuning_a_few_stages_leaves_only_the_frozen_ones_untouched(tmp_path: Path) -> None:
    start = _pretrained(tmp_path / "pretrained.pt")
    recipe = _recipe(tmp_path, weights=str(tmp_path / "pretrained.pt"), freeze_to="layer1")
    trainer, _ = build_trainer(recipe, tmp_path / "run", progress=False)
    trainer.train()
    after = trainer.module.state_dict()
    for k in start:
        frozen = k.split(".")[0] in ("stem", "layer1")
        assert torch.equal(after[k], start[k]) == frozen, k
    assert after["layer2.bn1.num_batches_tracked"] == 1000 + trainer.step  # a trained stage's BN


def test_frozen_stays_frozen_through_copies_and_ddp(tmp_path: Path) -> None:
    model = build_model(ModelConfig(name="small_cnn", width=4, freeze_to="layer2"), 10, 1)
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        copied.train()
        assert not copied.layer2.bn1.training and copied.layer3.bn1.training
        assert is_frozen(copied.layer2) and copied.layer2.train.module is copied.layer2
    torch_dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        ddp = DistributedDataParallel(model)
        ddp.train()
        assert not model.layer2.bn1.training and model.layer3.bn1.training
        before = copy.deepcopy(model.layer2.state_dict())
        ddp(torch.randn(4, 1, 8, 8)).sum().backward()
        assert all(torch.equal(v, before[k]) for k, v in model.layer2.state_dict().items())
        assert model.layer2.bn1.weight.grad is None and model.layer3.bn1.weight.grad is not None
    finally:
        torch_dist.destroy_process_group()


def test_unfreeze_gives_back_training_mode_and_gradients() -> None:
    block = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout(0.5))
    freeze_module(block)
    block.train()
    assert not block.training and not block[1].training
    assert not any(p.requires_grad for p in block.parameters())
    unfreeze_module(block)
    assert not is_frozen(block) and block.training and block[1].training
    assert all(p.requires_grad for p in block.parameters())
    block.eval()
    block.train()
    assert block[2].training


def test_a_detector_backbone_stage_is_frozen_in_eval_mode() -> None:
    cfg = ModelConfig(name="fcos_tiny_fpn", norm="bn", width=4, freeze_to="layer1")
    model = build_detector(cfg, 3, image_size=32, max_size=48)
    model.train()
    body = model.backbone.body
    assert not body.bn1.training and not body.layer1.bn1.training
    assert body.layer2.bn1.training and model.training


def test_a_builder_model_that_declares_its_stages_is_probed_and_layer_decayed(
    tmp_path: Path,
) -> None:
    recipe = Recipe.model_validate(
        {
            "name": "tiny-probe",
            "output_dir": str(tmp_path / "runs"),
            "data": {"name": "digits", "image_size": 16, "train_subset": 64, "val_subset": 32},
            "model": {
                "builder": "tunekit.detection:tiny_resnet",
                "kwargs": {"width": 8, "norm": "gn", "in_channels": 1},
                "freeze_to": "layer2",
            },
            "optim": {"name": "sgd", "lr": 0.1, "layer_decay": 0.5},
            "train": {"epochs": 1, "batch_size": 32, "device": "cpu"},
            "diagnostics": {"enabled": False},
        }
    )
    trainer, _ = build_trainer(recipe, tmp_path / "run", progress=False)
    model = trainer.module
    assert frozen_modules(model) == ["conv1", "bn1", "layer1", "layer2"]
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("layer3")}
    lrs = {id(p): g["lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    # layer3 trains at half the head's LR; nothing frozen is in the optimizer.
    assert {lrs[id(p)] for p in model.fc.parameters()} == {0.1}
    assert {lrs[id(p)] for p in model.layer3.parameters()} == {0.05}
    assert len(lrs) == len(list(model.fc.parameters())) + len(list(model.layer3.parameters()))
    trainer.train()
    after = model.state_dict()
    for k, v in before.items():
        if not k.startswith("fc"):
            assert torch.equal(after[k], v), k
