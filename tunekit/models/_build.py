"""Classifier builders from an explicit table, local starting weights, freezing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torchvision.models as tvm
from torch import nn

from tunekit.config import ModelConfig
from tunekit.data import check_call, import_builder
from tunekit.engine import load_checkpoint
from tunekit.errors import CheckpointError, ConfigError, unknown_choice

from ._norm import convert_norm, norm_layer
from ._small_cnn import SmallCNN

_RESNET_STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")


@dataclass(frozen=True)
class TorchvisionSpec:
    """How to build one torchvision classifier and where its parts are."""

    ctor: Callable[..., nn.Module]
    stages: tuple[str, ...]
    # stage name -> attribute paths of the modules in it
    stage_modules: Callable[[str], tuple[str, ...]]
    head: str  # attribute path of the final Linear
    stochastic_depth: bool = False
    takes_norm_layer: bool = False


def _resnet_stage(stage: str) -> tuple[str, ...]:
    return ("conv1", "bn1") if stage == "stem" else (stage,)


def _features_stage(stage: str) -> tuple[str, ...]:
    return (f"features.{stage.removeprefix('stage')}",)


def _resnet(ctor: Callable[..., nn.Module]) -> TorchvisionSpec:
    return TorchvisionSpec(ctor, _RESNET_STAGES, _resnet_stage, "fc", takes_norm_layer=True)


def _features(
    ctor: Callable[..., nn.Module], n: int, head: str, sd: bool = True
) -> TorchvisionSpec:
    return TorchvisionSpec(
        ctor, tuple(f"stage{i}" for i in range(n)), _features_stage, head, stochastic_depth=sd
    )


#: The torchvision classifiers tunekit builds, by name.
TORCHVISION: dict[str, TorchvisionSpec] = {
    "resnet18": _resnet(tvm.resnet18),
    "resnet34": _resnet(tvm.resnet34),
    "resnet50": _resnet(tvm.resnet50),
    "resnet101": _resnet(tvm.resnet101),
    "resnext50_32x4d": _resnet(tvm.resnext50_32x4d),
    "wide_resnet50_2": _resnet(tvm.wide_resnet50_2),
    "mobilenet_v3_small": _features(tvm.mobilenet_v3_small, 13, "classifier.3", sd=False),
    "efficientnet_b0": _features(tvm.efficientnet_b0, 9, "classifier.1"),
    "convnext_tiny": _features(tvm.convnext_tiny, 8, "classifier.2"),
}

MODEL_NAMES = ("small_cnn", *TORCHVISION)


def _get(module: nn.Module, path: str) -> nn.Module:
    return module.get_submodule(path)


def _set(module: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, leaf, new)


def head_path(model: nn.Module, cfg: ModelConfig) -> str | None:
    if cfg.name == "small_cnn":
        return "fc"
    spec = TORCHVISION.get(cfg.name)
    return spec.head if spec else getattr(model, "head_name", None)


def stage_modules(cfg: ModelConfig) -> dict[str, tuple[str, ...]]:
    """Stage name -> module paths, in order from the input, for freezing."""
    if cfg.name == "small_cnn":
        return {s: (s,) for s in SmallCNN.stages}
    spec = TORCHVISION.get(cfg.name)
    if spec is None:
        return {}
    return {s: spec.stage_modules(s) for s in spec.stages}


def _build_torchvision(
    cfg: ModelConfig, num_classes: int, in_channels: int, file: str | None
) -> nn.Module:
    spec = TORCHVISION[cfg.name]
    kwargs: dict[str, Any] = {"weights": None, "num_classes": num_classes, **cfg.kwargs}
    if spec.takes_norm_layer and cfg.norm != "syncbn":
        kwargs["norm_layer"] = norm_layer(cfg.norm)
    if cfg.drop_path > 0:
        if not spec.stochastic_depth:
            raise ConfigError(
                f"value {cfg.drop_path} is not allowed: {cfg.name} has no stochastic depth; use 0, "
                f"or a model that has it ({', '.join(n for n, s in TORCHVISION.items() if s.stochastic_depth)})",
                file=file,
                field="model.drop_path",
            )
        kwargs["stochastic_depth_prob"] = cfg.drop_path
    check_call(spec.ctor, (), kwargs, field="model.kwargs", file=file)
    try:
        model = spec.ctor(**kwargs)
    except TypeError as exc:
        # torchvision's builders pass **kwargs on to the class, so only the class can tell.
        if "keyword argument" not in str(exc):
            raise
        raise ConfigError(
            f"{cfg.name} does not accept these arguments ({exc})", file=file, field="model.kwargs"
        ) from None
    if not spec.takes_norm_layer or cfg.norm == "syncbn":
        model = convert_norm(model, cfg.norm)
    if in_channels != 3:
        if not spec.takes_norm_layer:
            raise ConfigError(
                f"{cfg.name} takes 3-channel images, the data has {in_channels}; use a ResNet or small_cnn",
                file=file,
                field="model.name",
            )
        old = model.get_submodule("conv1")
        assert isinstance(old, nn.Conv2d)
        model.conv1 = nn.Conv2d(
            in_channels,
            old.out_channels,
            old.kernel_size,  # type: ignore[arg-type]
            old.stride,  # type: ignore[arg-type]
            old.padding,  # type: ignore[arg-type]
            bias=False,
        )
    if cfg.dropout > 0:
        head = _get(model, spec.head)
        _set(model, spec.head, nn.Sequential(nn.Dropout(cfg.dropout), head))
    return model


def read_weights(path: str, *, file: str | None = None, hint: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a local weight file: a tunekit checkpoint's model, or a plain state dict.

    Every failure is a one-line ConfigError on ``model.weights``; ``hint`` is
    appended to an unreadable file's message (where such a file comes from).
    """
    try:
        obj = load_checkpoint(path, require_format=False)
    except CheckpointError as exc:
        raise ConfigError(
            f"{path!r}: {exc.message}{hint}", file=file, field="model.weights"
        ) from None
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(
            f"{path!r} holds no model weights (expected a tunekit checkpoint or a state dict)",
            file=file,
            field="model.weights",
        )
    return state


def load_weights(
    model: nn.Module, path: str, *, head: str | None, reset_head: bool, file: str | None = None
) -> dict[str, int]:
    """Loads a local checkpoint (a tunekit checkpoint or a plain state dict) into ``model``.

    The head is skipped when ``reset_head`` is set or its shape differs. Returns
    counts of loaded, skipped and missing tensors; loading nothing is an error.
    """
    state = read_weights(path, file=file)
    own = model.state_dict()
    take, skipped = {}, 0
    for k, v in state.items():
        is_head = head is not None and (k == head or k.startswith(head + "."))
        if k in own and own[k].shape == v.shape and not (is_head and reset_head):
            take[k] = v
        else:
            skipped += 1
    if not take:
        raise ConfigError(
            f"no tensor in {path!r} matches the model (names or shapes differ)",
            file=file,
            field="model.weights",
        )
    model.load_state_dict(take, strict=False)
    return {"loaded": len(take), "skipped": skipped, "missing": len(own) - len(take)}


def freeze_to(model: nn.Module, cfg: ModelConfig, file: str | None = None) -> list[str]:
    """Freezes every stage up to and including ``cfg.freeze_to``; returns their names."""
    if not cfg.freeze_to:
        return []
    stages = stage_modules(cfg)
    if cfg.freeze_to not in stages:
        raise unknown_choice(
            "stage",
            cfg.freeze_to,
            stages or ["(this model has no named stages)"],
            file=file,
            field="model.freeze_to",
        )
    frozen = []
    for stage, paths in stages.items():
        for p in paths:
            for param in _get(model, p).parameters():
                param.requires_grad_(False)
        frozen.append(stage)
        if stage == cfg.freeze_to:
            break
    return frozen


def build_model(
    cfg: ModelConfig, num_classes: int, in_channels: int = 3, *, file: str | None = None
) -> nn.Module:
    """The classifier a recipe names, with its starting weights and frozen stages."""
    if cfg.builder:
        fn = import_builder(cfg.builder, field_name="model.builder", file=file)
        kwargs = {"num_classes": num_classes, **cfg.kwargs}
        check_call(fn, (), kwargs, field="model.kwargs", file=file)
        model = fn(**kwargs)
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"builder {cfg.builder!r} returned {type(model).__name__}, not an nn.Module",
                file=file,
                field="model.builder",
            )
    elif cfg.name == "small_cnn":
        args = (num_classes, in_channels, cfg.width, cfg.norm, cfg.dropout, cfg.drop_path)
        check_call(SmallCNN, args, cfg.kwargs, field="model.kwargs", file=file)
        model = SmallCNN(*args, **cfg.kwargs)
    elif cfg.name in TORCHVISION:
        model = _build_torchvision(cfg, num_classes, in_channels, file)
    else:
        raise unknown_choice("model", cfg.name, MODEL_NAMES, file=file, field="model.name")
    if cfg.weights:
        load_weights(
            model, cfg.weights, head=head_path(model, cfg), reset_head=cfg.reset_head, file=file
        )
    freeze_to(model, cfg, file)
    return model
