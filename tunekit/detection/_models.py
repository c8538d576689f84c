"""Detectors from torchvision (RetinaNet, FCOS, Faster R-CNN) on ResNet-FPN or a tiny FPN backbone.

Names follow torchvision: ``<detector>_<backbone>_fpn``, e.g. ``fcos_tiny_fpn``
or ``retinanet_resnet50_fpn``. Nothing is downloaded: every builder passes
``weights=None``; starting weights come from a local checkpoint or a torchvision
weights name read from the torch hub cache (:func:`load_backbone_weights`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torchvision.models as tvm
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.fcos import FCOSClassificationHead, FCOSHead, FCOSRegressionHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.resnet import BasicBlock
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from tunekit.config import ModelConfig
from tunekit.errors import ConfigError, unknown_choice
from tunekit.models import WeightsReport, freeze_module, load_state, norm_layer, read_source

# Pixel statistics the detectors normalise with (the detectors' own transform does it).
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def gn_groups(channels: int, target: int) -> int:
    """The largest group count <= ``target`` that divides ``channels``."""
    for g in range(min(target, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


def head_norm(kind: str, groups: int) -> Callable[[int], nn.Module] | None:
    """The norm of the FPN and heads for the backbone norm ``kind``.

    Heads and FPN start from random weights whatever the backbone does, so a
    frozen BN (which needs pretrained statistics) becomes GN there, as in the
    common "frozen BN backbone, GN heads" setups.
    """
    if kind == "none":
        return None
    return norm_layer("gn" if kind == "frozen_bn" else kind, groups)


class TinyResNet(nn.Module):
    """A four-stage ResNet of torchvision ``BasicBlock``\\ s, small enough to train on a CPU.

    torchvision's ResNets start with a 7x7 stem and 64 channels, which is
    hours of CPU time on the shapes data; this keeps their block and their
    stage names (``conv1``/``bn1`` stem, ``layer1``..``layer3``, ``fc``) so a
    classifier trained with it loads into a detector's backbone by name.
    Strides: stem /2, layer1 /4, layer2 /8, layer3 /16.

    Use it as a classifier through a recipe's ``model.builder``::

        model:
          builder: tunekit.detection:tiny_resnet
          kwargs: {width: 16, norm: gn}
    """

    stages = ("stem", "layer1", "layer2", "layer3")
    # What model.freeze_to and optim.layer_decay act on when it is a recipe's classifier.
    stage_paths: ClassVar[dict[str, tuple[str, ...]]] = {
        "stem": ("conv1", "bn1"),
        "layer1": ("layer1",),
        "layer2": ("layer2",),
        "layer3": ("layer3",),
    }
    head_name: ClassVar[str] = "fc"

    def __init__(
        self, num_classes: int = 1000, width: int = 16, norm: str = "gn", in_channels: int = 3
    ) -> None:
        super().__init__()
        make = norm_layer(norm, groups=8)
        self.channels = (width, 2 * width, 4 * width)
        self.conv1 = nn.Conv2d(in_channels, width, 3, 2, 1, bias=False)
        self.bn1 = make(width)
        self.relu = nn.ReLU(inplace=True)
        c1, c2, c3 = self.channels
        self.layer1 = self._stage(width, c1, make)
        self.layer2 = self._stage(c1, c2, make)
        self.layer3 = self._stage(c2, c3, make)
        cin = c3
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    @staticmethod
    def _stage(cin: int, cout: int, make: Callable[[int], nn.Module]) -> BasicBlock:
        down = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), make(cout))
        return BasicBlock(cin, cout, 2, down, norm_layer=make)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def tiny_resnet(
    num_classes: int = 3, width: int = 16, norm: str = "gn", in_channels: int = 3
) -> TinyResNet:
    """The tiny backbone as a classifier (for ``model.builder`` in a classification recipe)."""
    return TinyResNet(num_classes, width, norm, in_channels)


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone body: how to build it and which of its stages feed the FPN."""

    build: Callable[[ModelConfig], tuple[nn.Module, dict[str, int]]]  # body, stage -> channels
    stages: tuple[str, ...]
    gn_groups: int


def _resnet_body(
    ctor: Callable[..., nn.Module], expansion: int
) -> Callable[[ModelConfig], tuple[nn.Module, dict[str, int]]]:
    def build(cfg: ModelConfig) -> tuple[nn.Module, dict[str, int]]:
        norm = "bn" if cfg.norm == "syncbn" else cfg.norm
        body = ctor(weights=None, norm_layer=norm_layer(norm, 32))
        if cfg.norm == "syncbn":
            body = nn.SyncBatchNorm.convert_sync_batchnorm(body)
        chans = {f"layer{i}": 64 * 2 ** (i - 1) * expansion for i in range(1, 5)}
        return body, chans

    return build


def _tiny_body(cfg: ModelConfig) -> tuple[nn.Module, dict[str, int]]:
    body = TinyResNet(1, cfg.width, cfg.norm)
    return body, {f"layer{i + 1}": c for i, c in enumerate(body.channels)}


#: Backbone bodies by name.
BACKBONES: dict[str, BackboneSpec] = {
    "tiny": BackboneSpec(_tiny_body, ("stem", "layer1", "layer2", "layer3"), gn_groups=8),
    "resnet18": BackboneSpec(
        _resnet_body(tvm.resnet18, 1), ("stem", "layer1", "layer2", "layer3", "layer4"), 32
    ),
    "resnet50": BackboneSpec(
        _resnet_body(tvm.resnet50, 4), ("stem", "layer1", "layer2", "layer3", "layer4"), 32
    ),
}

DETECTOR_KINDS = ("fcos", "retinanet", "fasterrcnn")

#: Every detector name a recipe may use.
DETECTOR_NAMES = tuple(f"{d}_{b}_fpn" for d in DETECTOR_KINDS for b in BACKBONES)

# model.kwargs a detector understands, with their defaults for (tiny, resnet) backbones.
_KWARGS: dict[str, tuple[Any, Any]] = {
    "fpn_channels": (32, 256),
    "head_convs": (2, 4),
    # FPN inputs: for the tiny body layer1..3 (strides 4, 8, 16), for ResNets layer2..4 (+ P6/P7).
    "returned_layers": ([1, 2, 3], [2, 3, 4]),
    "anchor_sizes": (None, None),
    "score_thresh": (0.05, 0.05),
    "nms_thresh": (0.6, 0.5),
    "detections_per_img": (100, 100),
    "center_sampling_radius": (1.5, 1.5),
}


def _split_name(name: str, file: str | None) -> tuple[str, str]:
    if name not in DETECTOR_NAMES:
        raise unknown_choice("detector", name, DETECTOR_NAMES, file=file, field="model.name")
    kind, rest = name.split("_", 1)
    return kind, rest.removesuffix("_fpn")


def _options(cfg: ModelConfig, tiny: bool, file: str | None) -> dict[str, Any]:
    unknown = sorted(set(cfg.kwargs) - set(_KWARGS))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} for a detector; allowed: {', '.join(_KWARGS)}",
            file=file,
            field=f"model.kwargs.{unknown[0]}",
        )
    return {k: cfg.kwargs.get(k, v[0] if tiny else v[1]) for k, v in _KWARGS.items()}


def build_detector(
    cfg: ModelConfig,
    num_classes: int,
    *,
    image_size: int,
    max_size: int,
    file: str | None = None,
) -> nn.Module:
    """The detector ``cfg.name`` for ``num_classes`` categories (labels 1..K; 0 is background).

    ``image_size`` is the shorter side at evaluation (training images arrive
    resized by the data transforms and are not resized again); ``max_size``
    caps the longer side. The norm option applies to backbone, FPN and heads
    (see :func:`head_norm`); ``cfg.weights`` loads a local checkpoint and
    ``cfg.freeze_to`` freezes backbone stages.
    """
    kind, bname = _split_name(cfg.name, file)
    spec = BACKBONES[bname]
    opt = _options(cfg, bname == "tiny", file)
    body, chans = spec.build(cfg)
    fpn_c = int(opt["fpn_channels"])
    layers = [f"layer{i}" for i in opt["returned_layers"]]
    missing = [name for name in layers if name not in chans]
    if missing or not layers:
        raise ConfigError(
            f"value {opt['returned_layers']!r} is not allowed: {bname} has stages "
            f"{', '.join(k.removeprefix('layer') for k in chans)}",
            file=file,
            field="model.kwargs.returned_layers",
        )
    hnorm = head_norm(cfg.norm, spec.gn_groups)
    extra = (
        LastLevelP6P7(fpn_c, fpn_c)
        if kind != "fasterrcnn" and bname != "tiny"
        else LastLevelMaxPool()
    )
    backbone = BackboneWithFPN(
        body,
        {name: str(i) for i, name in enumerate(layers)},
        [chans[name] for name in layers],
        fpn_c,
        extra_blocks=extra,
        norm_layer=hnorm,
    )
    n_levels = len(layers) + (2 if isinstance(extra, LastLevelP6P7) else 1)
    strides = _strides(bname, layers, n_levels)
    common: dict[str, Any] = {
        "min_size": image_size,
        "max_size": max_size,
        "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD,
        # Training images come resized from the data transforms (multi-scale, with their boxes).
        "_skip_resize": True,
    }
    model: nn.Module
    if kind == "fcos":
        sizes = opt["anchor_sizes"] or [[s] for s in strides]
        anchors = AnchorGenerator(tuple(tuple(s) for s in sizes), ((1.0,),) * len(sizes))
        norm_maker = hnorm or (lambda c: nn.Identity())
        # FCOSHead hard-codes GroupNorm(32) in its towers; its two parts, built here, take
        # the recipe's norm (num_convs=0 keeps the throw-away towers empty).
        head = FCOSHead(fpn_c, 1, num_classes + 1, num_convs=0)
        head.classification_head = FCOSClassificationHead(
            fpn_c, 1, num_classes + 1, opt["head_convs"], norm_layer=norm_maker
        )
        head.regression_head = FCOSRegressionHead(
            fpn_c, 1, opt["head_convs"], norm_layer=norm_maker
        )
        model = FCOS(
            backbone,
            num_classes + 1,
            anchor_generator=anchors,
            head=head,
            score_thresh=opt["score_thresh"],
            nms_thresh=opt["nms_thresh"],
            detections_per_img=opt["detections_per_img"],
            center_sampling_radius=opt["center_sampling_radius"],
            **common,
        )
    elif kind == "retinanet":
        sizes = opt["anchor_sizes"] or [
            [s * 4, int(s * 4 * 2 ** (1 / 3)), int(s * 4 * 2 ** (2 / 3))] for s in strides
        ]
        anchors = AnchorGenerator(tuple(tuple(s) for s in sizes), ((0.5, 1.0, 2.0),) * len(sizes))
        head = RetinaNetHead(
            fpn_c, anchors.num_anchors_per_location()[0], num_classes + 1, norm_layer=hnorm
        )
        model = RetinaNet(
            backbone,
            num_classes + 1,
            anchor_generator=anchors,
            head=head,
            score_thresh=opt["score_thresh"],
            nms_thresh=opt["nms_thresh"],
            detections_per_img=opt["detections_per_img"],
            **common,
        )
    else:
        sizes = opt["anchor_sizes"] or [[s * 8] for s in strides]
        anchors = AnchorGenerator(tuple(tuple(s) for s in sizes), ((0.5, 1.0, 2.0),) * len(sizes))
        rpn_head = RPNHead(fpn_c, anchors.num_anchors_per_location()[0], conv_depth=1)
        rep = 1024 if bname != "tiny" else max(fpn_c * 4, 64)
        box_head = FastRCNNConvFCHead(
            (fpn_c, 7, 7), [fpn_c] * opt["head_convs"], [rep], norm_layer=hnorm
        )
        # RoIs are pooled from the FPN levels of the body (not the extra max-pool level).
        pooler = MultiScaleRoIAlign(
            [str(i) for i in range(len(layers))], output_size=7, sampling_ratio=2
        )
        model = FasterRCNN(
            backbone,
            None,  # the class count is in box_predictor
            rpn_anchor_generator=anchors,
            rpn_head=rpn_head,
            box_roi_pool=pooler,
            box_head=box_head,
            box_predictor=FastRCNNPredictor(rep, num_classes + 1),
            box_score_thresh=opt["score_thresh"],
            box_nms_thresh=opt["nms_thresh"],
            box_detections_per_img=opt["detections_per_img"],
            **common,
        )
    if cfg.weights:
        load_backbone_weights(model, cfg.weights, strict=cfg.weights_strict, file=file)
    freeze_backbone(model, bname, cfg.freeze_to, file=file)
    return model


def _strides(bname: str, layers: list[str], n_levels: int) -> list[int]:
    first = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}[layers[0]]
    return [first * 2**i for i in range(n_levels)]


def load_backbone_weights(
    model: nn.Module, spec: str, *, strict: bool = True, file: str | None = None
) -> WeightsReport:
    """Loads starting weights into a detector: a local checkpoint or a torchvision name.

    A detector's own checkpoint (keys ``backbone.…``, also torchvision's COCO
    weights) loads as a whole; a classifier's (a tunekit checkpoint, a plain
    state dict, or ``torchvision:ResNet50_Weights.IMAGENET1K_V2``) loads into
    the backbone body by stage name, and its head (``fc``) is unexpected there.
    Tensors whose shapes differ are skipped; the report counts loaded, missing
    (within the part loaded into), unexpected and shape-mismatched tensors.
    Loading nothing, and norm layers of another kind when ``strict``, are errors.
    """
    source, state = read_source(
        spec,
        file=file,
        hint="; a backbone checkpoint comes from a classifier run, e.g. tunekit train "
        "--recipe recipes/shapes_classifier.yaml --out runs/shapes_classifier",
    )
    whole = any(k.startswith("backbone.") for k in state)
    if not whole:
        state = {f"backbone.body.{k}": v for k, v in state.items()}
    return load_state(
        model,
        state,
        source,
        scope="" if whole else "backbone.body.",
        strict=strict,
        file=file,
        nothing_matches=f"the detector's {'weights' if whole else 'backbone'} (names or shapes "
        "differ: was it trained with the same backbone and width?)",
    )


def freeze_backbone(
    model: nn.Module, backbone: str, stage: str | None, *, file: str | None = None
) -> list[str]:
    """Freezes backbone stages up to and including ``stage``; returns their names."""
    if not stage:
        return []
    stages = BACKBONES[backbone].stages
    if stage not in stages:
        raise unknown_choice("stage", stage, stages, file=file, field="model.freeze_to")
    body = model.get_submodule("backbone.body")
    frozen = []
    for s in stages:
        names = ("conv1", "bn1") if s == "stem" else (s,)
        for n in names:
            if hasattr(body, n):
                freeze_module(getattr(body, n))  # no gradients, and eval mode from now on
        frozen.append(s)
        if s == stage:
            break
    return frozen
