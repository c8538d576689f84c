"""Recipe schema, YAML loading, ``a.b=1`` overrides and one-line errors."""

from ._loading import (
    apply_overrides,
    load_recipe,
    parse_override,
    read_yaml,
    recipe_to_yaml,
    validate,
)
from ._recipe import (
    AugmentConfig,
    AveragingConfig,
    DataConfig,
    DiagnosticsConfig,
    EarlyStoppingConfig,
    EmaConfig,
    ModelConfig,
    OptimConfig,
    Recipe,
    RegularizationConfig,
    ScheduleConfig,
    SnapshotConfig,
    SwaConfig,
    TrainConfig,
)
from ._yaml import load_yaml

__all__ = [
    "AugmentConfig",
    "AveragingConfig",
    "DataConfig",
    "DiagnosticsConfig",
    "EarlyStoppingConfig",
    "EmaConfig",
    "ModelConfig",
    "OptimConfig",
    "Recipe",
    "RegularizationConfig",
    "ScheduleConfig",
    "SnapshotConfig",
    "SwaConfig",
    "TrainConfig",
    "apply_overrides",
    "load_recipe",
    "load_yaml",
    "parse_override",
    "read_yaml",
    "recipe_to_yaml",
    "validate",
]
