"""Norm layers by name, and conversion of a built network's BatchNorm layers."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d


def gn_groups(channels: int, target: int = 32) -> int:
    """The largest group count <= target that divides ``channels`` (32 as in Wu & He)."""
    for g in range(min(target, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


def norm_layer(kind: str, groups: int = 32) -> Callable[[int], nn.Module]:
    """A constructor ``f(channels)`` for a 2-d norm layer of ``kind``.

    ``groups`` is GroupNorm's target group count (the largest divisor of the
    channels up to it is used).
    """
    if kind == "bn":
        return nn.BatchNorm2d
    if kind == "syncbn":
        return nn.SyncBatchNorm
    if kind == "frozen_bn":
        return FrozenBatchNorm2d
    if kind == "gn":
        return lambda c: nn.GroupNorm(gn_groups(c, groups), c)
    if kind == "none":
        return lambda c: nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


def convert_norm(module: nn.Module, kind: str) -> nn.Module:
    """Replaces every BatchNorm2d in ``module`` with ``kind`` (keeping affine weights where it can)."""
    if kind == "bn":
        return module
    if kind == "syncbn":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            c = child.num_features
            new: nn.Module
            if kind == "frozen_bn":
                frozen = FrozenBatchNorm2d(c, eps=child.eps)
                with torch.no_grad():
                    frozen.weight.copy_(child.weight)
                    frozen.bias.copy_(child.bias)
                    if child.running_mean is not None and child.running_var is not None:
                        frozen.running_mean.copy_(child.running_mean)
                        frozen.running_var.copy_(child.running_var)
                new = frozen
            elif kind == "gn":
                new = nn.GroupNorm(gn_groups(c), c, eps=child.eps)
            else:
                new = nn.Identity()
            setattr(module, name, new)
        else:
            convert_norm(child, kind)
    return module
