"""Detector builders: every name builds and trains a step, norms reach the heads, weights and freezing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from tunekit.config import ModelConfig
from tunekit.core import save_atomic
from tunekit.detection import DETECTOR_NAMES, TinyResNet, build_detector, load_backbone_weights
from tunekit.errors import ConfigError


def _batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 64, 64, generator=g), torch.rand(3, 64, 48, generator=g)]
    targets = [
        {
            "boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 20.0, 60.0, 50.0]]),
            "labels": torch.tensor([1, 3]),
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # an empty image
    ]
    return images, targets


def _norm_types(module: nn.Module) -> set[type]:
    kinds = (nn.GroupNorm, nn.BatchNorm2d, nn.SyncBatchNorm, FrozenBatchNorm2d)
    return {type(m) for m in module.modules() if isinstance(m, kinds)}


# Of the ResNet-50 detectors, the COCO studies' RetinaNet (~0.5 s here): the coco_scratch search
# test trains a tiny backbone, so this is where the shipped detector takes a training step.
TRAINED = [n for n in DETECTOR_NAMES if "resnet50" not in n or n == "retinanet_resnet50_fpn"]


@pytest.mark.parametrize("name", TRAINED)
def test_each_detector_trains_a_step_and_predicts(name: str) -> None:
    torch.manual_seed(0)
    small = {"fpn_channels": 32, "head_convs": 1}  # the ResNet bodies stay full size
    model = build_detector(
        ModelConfig(name=name, norm="gn", width=8, kwargs=small), 3, image_size=64, max_size=96
    )
    images, targets = _batch()
    losses = model(images, targets)
    assert len(losses) >= 2 and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()  # type: ignore[union-attr]
    assert all(p.grad is not None for p in model.backbone.body.parameters())
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and set(out[0]) >= {"boxes", "scores", "labels"}
    # Boxes come back in the coordinates of each input image.
    for o, img in zip(out, images):
        if len(o["boxes"]):
            assert float(o["boxes"][:, 2].max()) <= img.shape[-1] + 1e-3


def test_r50_builds_with_gn_everywhere_and_no_download() -> None:
    model = build_detector(
        ModelConfig(name="retinanet_resnet50_fpn", norm="gn"), 80, image_size=800, max_size=1333
    )
    assert _norm_types(model) == {nn.GroupNorm}
    assert sum(p.numel() for p in model.parameters()) > 30_000_000
    assert model.transform.min_size == (800,) and model.transform.max_size == 1333


@pytest.mark.parametrize(
    ("norm", "backbone", "heads"),
    [
        ("gn", {nn.GroupNorm}, {nn.GroupNorm}),
        ("syncbn", {nn.SyncBatchNorm}, {nn.SyncBatchNorm}),
        ("frozen_bn", {FrozenBatchNorm2d}, {nn.GroupNorm}),
        ("bn", {nn.BatchNorm2d}, {nn.BatchNorm2d}),
    ],
)
def test_norm_option_reaches_backbone_fpn_and_heads(
    norm: str, backbone: set[type], heads: set[type]
) -> None:
    for name in ("fcos_tiny_fpn", "retinanet_resnet18_fpn", "fasterrcnn_tiny_fpn"):
        cfg = ModelConfig(name=name, norm=norm, width=8, kwargs={"fpn_channels": 32})
        model = build_detector(cfg, 3, image_size=64, max_size=96)
        assert _norm_types(model.backbone.body) == backbone, name
        assert _norm_types(model.backbone.fpn) == heads, name
        head = model.roi_heads.box_head if name.startswith("fasterrcnn") else model.head
        assert _norm_types(head) == heads, name


def test_backbone_loads_from_a_classifier_checkpoint_and_freezes(tmp_path: Path) -> None:
    torch.manual_seed(1)
    clf = TinyResNet(num_classes=3, width=8, norm="gn")
    path = save_atomic(
        {"format": "tunekit-checkpoint-v1", "model": clf.state_dict()}, tmp_path / "clf.pt"
    )
    cfg = ModelConfig(
        name="fcos_tiny_fpn", norm="gn", width=8, weights=str(path), freeze_to="layer1"
    )
    model = build_detector(cfg, 3, image_size=64, max_size=96)
    body = model.backbone.body
    assert torch.equal(body.conv1.weight, clf.conv1.weight)
    assert torch.equal(body.layer3.conv2.weight, clf.layer3.conv2.weight)
    assert not any(
        p.requires_grad for m in (body.conv1, body.bn1, body.layer1) for p in m.parameters()
    )
    assert all(p.requires_grad for p in body.layer2.parameters())
    counts = load_backbone_weights(model, str(path))
    assert counts.skipped == counts.unexpected == 2  # the classifier's fc weight and bias
    # A detector's own checkpoint loads as a whole.
    other = build_detector(
        ModelConfig(name="fcos_tiny_fpn", norm="gn", width=8), 3, image_size=64, max_size=96
    )
    save_atomic({"model": model.state_dict()}, tmp_path / "det.pt")
    load_backbone_weights(other, str(tmp_path / "det.pt"))
    assert all(
        torch.equal(a, b) for a, b in zip(other.state_dict().values(), model.state_dict().values())
    )


def test_bad_model_settings_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown detector 'fcos_resnet_fpn'.*choose one of: .*fcos_tiny_fpn"
    ):
        build_detector(ModelConfig(name="fcos_resnet_fpn"), 3, image_size=64, max_size=96)
    with pytest.raises(
        ConfigError, match=r"field 'model.kwargs.fpn_chanels'.*allowed: fpn_channels"
    ):
        build_detector(
            ModelConfig(name="fcos_tiny_fpn", kwargs={"fpn_chanels": 8}),
            3,
            image_size=64,
            max_size=96,
        )
    with pytest.raises(ConfigError, match=r"field 'model.freeze_to'.*unknown stage 'layer4'"):
        build_detector(
            ModelConfig(name="fcos_tiny_fpn", freeze_to="layer4"), 3, image_size=64, max_size=96
        )
    with pytest.raises(
        ConfigError, match=r"model.weights.*no such checkpoint file.*shapes_classifier"
    ):
        build_detector(
            ModelConfig(name="fcos_tiny_fpn", weights=str(tmp_path / "missing.pt")),
            3,
            image_size=64,
            max_size=96,
        )
    save_atomic({"model": TinyResNet(3, width=32).state_dict()}, tmp_path / "wide.pt")
    with pytest.raises(ConfigError, match=r"no tensor .* matches the detector's backbone"):
        build_detector(
            ModelConfig(name="fcos_tiny_fpn", width=8, weights=str(tmp_path / "wide.pt")),
            3,
            image_size=64,
            max_size=96,
        )
