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
    DataConfig,
    EarlyStoppingConfig,
    ModelConfig,
    OptimConfig,
    Recipe,
    RegularizationConfig,
    ScheduleConfig,
    TrainConfig,
)

__all__ = [
    "AugmentConfig",
    "DataConfig",
    "EarlyStoppingConfig",
    "ModelConfig",
    "OptimConfig",
    "Recipe",
    "RegularizationConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "load_recipe",
    "parse_override",
    "read_yaml",
    "recipe_to_yaml",
    "validate",
]
