"""Recipe schema, YAML loading, ``a.b=1`` overrides and one-line errors."""

from typing import TYPE_CHECKING

from tunekit._lazy import attach

if TYPE_CHECKING:
    from ._base import FieldError, Section, metric_key
    from ._loading import (
        apply_overrides,
        load_recipe,
        parse_override,
        read_yaml,
        recipe_to_yaml,
        set_path,
        validate,
    )
    from ._recipe import (
        AUTO_FIRST_INTERVAL,
        MAX_COUNT,
        MAX_EPOCHS,
        OPTIMIZER_SETTINGS,
        AugmentConfig,
        AveragingConfig,
        DataConfig,
        DiagnosticsConfig,
        EarlyStoppingConfig,
        EmaConfig,
        EvalConfig,
        ModelConfig,
        MultilabelConfig,
        OptimConfig,
        Recipe,
        RegularizationConfig,
        ScheduleConfig,
        SnapshotConfig,
        SwaConfig,
        TrainConfig,
    )
    from ._yaml import load_yaml
else:
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
