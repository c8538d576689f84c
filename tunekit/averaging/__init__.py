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

# Imported on first use (see tunekit._lazy): torch only when a hook or model is used.
_SOURCES = {
    "._bn": ("batchnorm_layers", "recalibrate_bn"),
    "._ema": ("EmaHook", "ModelEma"),
    "._ensemble": (
        "ClassifierEnsemble",
        "DetectorEnsemble",
        "Merge",
        "ensemble_for_task",
        "weighted_box_fusion",
    ),
    "._hooks": ("averaging_hooks",),
    "._snapshots": ("INDEX", "SNAPSHOT_FORMAT", "SnapshotHook", "cycle_ended", "load_snapshot"),
    "._swa": ("SwaHook",),
}
if not TYPE_CHECKING:
    __getattr__, __dir__ = attach(__name__, _SOURCES)

__all__ = [
    "INDEX",
    "SNAPSHOT_FORMAT",
    "ClassifierEnsemble",
    "DetectorEnsemble",
    "EmaHook",
    "Merge",
    "ModelEma",
    "SnapshotHook",
    "SwaHook",
    "averaging_hooks",
    "batchnorm_layers",
    "cycle_ended",
    "ensemble_for_task",
    "load_snapshot",
    "recalibrate_bn",
    "weighted_box_fusion",
]
