"""Kinds of layers several packages ask about, by torch's public classes.

torch groups them under private bases (``_BatchNorm``, ``_NormBase``, ``_DropoutNd``);
these tuples say the same with public names, in one place.
"""

from __future__ import annotations

from torch import nn

#: Layers with running statistics updated in training mode (what BN recalibration resets).
BATCH_NORMS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
)

#: Normalisation layers, whose affine parameters take no weight decay by default.
NORMS: tuple[type[nn.Module], ...] = (
    *BATCH_NORMS,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.GroupNorm,
    nn.LayerNorm,
)

#: Layers whose output is random in training mode.
DROPOUTS: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
