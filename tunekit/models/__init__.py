"""Classifier builders, norm conversion, starting weights (local or torchvision's) and freezing."""

from typing import TYPE_CHECKING

from tunekit._lazy import attach

if TYPE_CHECKING:
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
else:
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
