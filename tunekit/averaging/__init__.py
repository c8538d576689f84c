"""Averaging and ensembles: Polyak/EMA, SWA, snapshot ensembles, top-k trials, export."""

from typing import TYPE_CHECKING

from tunekit._lazy import attach

if TYPE_CHECKING:
    from ._bn import batchnorm_layers, recalibrate_bn
    from ._ema import EmaHook, ModelEma
    from ._ensemble import (
        ClassifierEnsemble,
        DetectorEnsemble,
        ensemble_for_task,
        weighted_box_fusion,
    )
    from ._hooks import averaging_hooks
    from ._snapshots import SNAPSHOT_FORMAT, SnapshotHook, cycle_ended, load_snapshot
    from ._swa import SwaHook

# Imported on first use (see tunekit._lazy), so that `tunekit ensemble --help` stays light.
_SOURCES = {
    "._bn": ("batchnorm_layers", "recalibrate_bn"),
    "._ema": ("EmaHook", "ModelEma"),
    "._ensemble": (
        "ClassifierEnsemble",
        "DetectorEnsemble",
        "ensemble_for_task",
        "weighted_box_fusion",
    ),
    "._hooks": ("averaging_hooks",),
    "._snapshots": ("SNAPSHOT_FORMAT", "SnapshotHook", "cycle_ended", "load_snapshot"),
    "._swa": ("SwaHook",),
}
if not TYPE_CHECKING:
    __getattr__, __dir__ = attach(__name__, _SOURCES)

__all__ = [
    "SNAPSHOT_FORMAT",
    "ClassifierEnsemble",
    "DetectorEnsemble",
    "EmaHook",
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
