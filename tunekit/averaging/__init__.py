"""Averaging during training (EMA, SWA, snapshot ensembles, BN recalibration) and ensemble modules.

Below the run builder; ensembles of finished runs are :mod:`tunekit.ensemble`.
"""

from typing import TYPE_CHECKING

from tunekit._lazy import attach

if TYPE_CHECKING:
    from ._bn import batchnorm_layers, recalibrate_bn
    from ._ema import EmaHook, ModelEma
    from ._ensemble import (
        ClassifierEnsemble,
        DetectorEnsemble,
        Merge,
        ensemble_for_task,
        weighted_box_fusion,
    )
    from ._hooks import averaging_hooks
    from ._snapshots import INDEX, SNAPSHOT_FORMAT, SnapshotHook, cycle_ended, load_snapshot
    from ._swa import SwaHook
else:
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
