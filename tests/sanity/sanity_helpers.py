"""Loaders and the digits model shared by the sanity tests (imported by name: test dirs are not
packages); the tiny models and detectors are tunekit.testing's."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from tunekit.testing import loader, random_classification


def shuffled_loader(
    n: int = 64, batch_size: int = 16, num_classes: int = 4, seed: int = 0
) -> DataLoader:
    """A shuffling loader with its own generator (whose state the probes must restore too)."""
    return loader(random_classification(n, num_classes, seed=seed), batch_size, True, seed)


def digits_loader(batch_size: int = 64, seed: int = 0) -> DataLoader:
    """The real digits training set (16x16, no augmentation), shuffled with its own generator."""
    from tunekit.config import DataConfig
    from tunekit.data import build_data

    bundle = build_data(DataConfig(name="digits", image_size=16))
    return DataLoader(
        bundle.train,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )


def digits_cnn(seed: int = 0) -> nn.Module:
    """The digits recipe's network (SmallCNN, width 16, batch norm)."""
    from tunekit.models import SmallCNN

    torch.manual_seed(seed)
    return SmallCNN(num_classes=10, in_channels=1, width=16)
