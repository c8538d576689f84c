"""Classifier builders, norm conversion, local weights and freezing."""

from ._build import (
    MODEL_NAMES,
    TORCHVISION,
    build_model,
    freeze_to,
    load_weights,
    read_weights,
    stage_modules,
)
from ._norm import convert_norm, gn_groups, norm_layer
from ._small_cnn import SmallCNN

__all__ = [
    "MODEL_NAMES",
    "TORCHVISION",
    "SmallCNN",
    "build_model",
    "convert_norm",
    "freeze_to",
    "gn_groups",
    "load_weights",
    "norm_layer",
    "read_weights",
    "stage_modules",
]
