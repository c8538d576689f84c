"""Classifier builders, norm conversion, starting weights (local or torchvision's) and freezing."""

from ._build import (
    MODEL_NAMES,
    TORCHVISION,
    build_model,
    freeze_to,
    load_weights,
    stage_modules,
)
from ._freeze import freeze_module, frozen_modules, is_frozen, unfreeze_module
from ._norm import convert_norm, gn_groups, norm_layer
from ._small_cnn import SmallCNN
from ._weights import (
    TORCHVISION_PREFIX,
    WeightsLog,
    WeightsReport,
    apply_weights,
    check_hash,
    hub_file,
    load_state,
    norm_mismatches,
    read_source,
    read_weights,
    resolve_weights,
    torchvision_weights,
    weights_report,
)

__all__ = [
    "MODEL_NAMES",
    "TORCHVISION",
    "TORCHVISION_PREFIX",
    "SmallCNN",
    "WeightsLog",
    "WeightsReport",
    "apply_weights",
    "build_model",
    "check_hash",
    "convert_norm",
    "freeze_module",
    "freeze_to",
    "frozen_modules",
    "gn_groups",
    "hub_file",
    "is_frozen",
    "load_state",
    "load_weights",
    "norm_layer",
    "norm_mismatches",
    "read_source",
    "read_weights",
    "resolve_weights",
    "stage_modules",
    "torchvision_weights",
    "unfreeze_module",
    "weights_report",
]
