"""Averaging and ensembles: Polyak/EMA, SWA, snapshot ensembles, top-k trials, export."""

from ._bn import batchnorm_layers, recalibrate_bn
from ._ema import EmaHook, ModelEma
from ._ensemble import ClassifierEnsemble, DetectorEnsemble, ensemble_for_task, weighted_box_fusion
from ._hooks import averaging_hooks
from ._snapshots import SNAPSHOT_FORMAT, SnapshotHook, cycle_ended, load_snapshot
from ._swa import SwaHook

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
