"""Classifier builders from an explicit table, starting weights, freezing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torchvision.models as tvm
from torch import nn

from tunekit.config import ModelConfig
from tunekit.data import check_call, import_builder
from tunekit.errors import ConfigError, unknown_choice

from ._freeze import freeze_module
from ._norm import convert_norm, norm_layer
from ._small_cnn import SmallCNN
from ._weights import TORCHVISION_PREFIX, WeightsReport, apply_weights, torchvision_weights

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


def stage_modules(cfg: ModelConfig, model: nn.Module | None = None) -> dict[str, tuple[str, ...]]:
    """Stage name -> module paths, in order from the input, for freezing and layer decay.

    A ``model.builder`` model names its own stages with a ``stage_paths`` mapping
    (see :class:`~tunekit.detection.TinyResNet`); without one it has none.
    """
    if cfg.builder:
        declared = getattr(model, "stage_paths", None)
        return {str(k): tuple(v) for k, v in declared.items()} if isinstance(declared, dict) else {}
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


def load_weights(
    model: nn.Module,
    path: str,
    *,
    head: str | None,
    reset_head: bool,
    strict: bool = True,
    file: str | None = None,
) -> WeightsReport:
    """Loads starting weights into ``model``: a local checkpoint (a tunekit checkpoint or a
    plain state dict) or a torchvision name (``torchvision:ResNet50_Weights.IMAGENET1K_V2``,
    read from the torch hub cache, never downloaded).

    The head is skipped when ``reset_head`` is set, and any tensor whose shape
    differs. Returns the report (loaded, missing, unexpected, shape-mismatched);
    loading nothing, and norm layers of another kind when ``strict``, are errors.
    """
    return apply_weights(model, path, head=head, reset_head=reset_head, strict=strict, file=file)


def freeze_to(model: nn.Module, cfg: ModelConfig, file: str | None = None) -> list[str]:
    """Freezes every stage up to and including ``cfg.freeze_to``; returns their names.

    A frozen stage has no gradients (so no place in the optimizer) and stays in
    eval mode through the trainer's ``model.train()`` calls: its BN statistics
    stay as loaded (see :func:`~tunekit.models.freeze_module`).
    """
    if not cfg.freeze_to:
        return []
    stages = stage_modules(cfg, model)
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
            freeze_module(_get(model, p))
        frozen.append(stage)
        if stage == cfg.freeze_to:
            break
    return frozen


def _check_named_weights_fit(cfg: ModelConfig, file: str | None) -> None:
    """torchvision weights of one classifier named for another (ResNet50's for resnet18)."""
    weights = cfg.weights or ""
    if not weights.startswith(TORCHVISION_PREFIX) or cfg.name not in TORCHVISION or cfg.builder:
        return
    enum = type(torchvision_weights(weights.removeprefix(TORCHVISION_PREFIX), file=file))
    own = tvm.get_model_weights(cfg.name)
    if enum is own:
        return
    theirs = [n for n in TORCHVISION if tvm.get_model_weights(n) is enum]
    use = f" or model.name: {theirs[0]}" if theirs else ""
    raise ConfigError(
        f"{enum.__name__} are not {cfg.name}'s weights; use torchvision:{own.__name__}."
        f"<MEMBER> ({', '.join(own.__members__)}){use}, or model.weights_strict: false "
        "to load what fits",
        file=file,
        field="model.weights",
    )


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
        if cfg.weights_strict:
            _check_named_weights_fit(cfg, file)
        load_weights(
            model,
            cfg.weights,
            head=head_path(model, cfg),
            reset_head=cfg.reset_head,
            strict=cfg.weights_strict,
            file=file,
        )
    freeze_to(model, cfg, file)
    return model
