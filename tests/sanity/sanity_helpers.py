"""Small models and loaders shared by the sanity tests (imported by name: test dirs are not packages)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from tunekit.testing import random_classification


class BNNet(nn.Module):
    """A tiny CNN with batch norm and dropout: buffers, modes and RNG use all change in a probe."""

    def __init__(self, num_classes: int = 4, width: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3))
        return self.fc(self.drop(x))


class ConstantNet(nn.Module):
    """A model whose output does not depend on its input (a planted fault)."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(1, num_classes)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.ones(len(x), 1, device=x.device))


def shuffled_loader(
    n: int = 64, batch_size: int = 16, num_classes: int = 4, seed: int = 0
) -> DataLoader:
    """A shuffling loader with its own generator (whose state the probes must restore too)."""
    ds = random_classification(n, num_classes, seed=seed)
    return DataLoader(
        ds, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )


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
