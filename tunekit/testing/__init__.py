"""Tiny models and datasets for tests (tunekit's and users' own).

Everything here trains in well under a second on a CPU core.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class TinyMLP(nn.Module):
    """A two-layer ReLU network over flattened images."""

    def __init__(self, in_features: int = 64, num_classes: int = 4, hidden: int = 32) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x.flatten(1))))


class TinyCNN(nn.Module):
    """Two conv layers and a linear head, for 1-channel 8x8 inputs by default."""

    def __init__(self, in_channels: int = 1, num_classes: int = 4, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(self.pool(x).flatten(1))


def random_classification(
    n: int = 64, num_classes: int = 4, shape: tuple[int, ...] = (1, 8, 8), seed: int = 0
) -> TensorDataset:
    """A learnable random dataset: each class has its own mean image plus noise."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(num_classes, *shape, generator=g)
    y = torch.arange(n) % num_classes
    x = means[y] + 0.5 * torch.randn(n, *shape, generator=g)
    return TensorDataset(x, y)


def loader(
    dataset: TensorDataset, batch_size: int = 16, shuffle: bool = False, seed: int = 0
) -> DataLoader:
    """A deterministic DataLoader over ``dataset``."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed),
    )


from ._browser import chromium_dom  # noqa: E402
from ._postgres import PostgresServer  # noqa: E402

__all__ = [
    "PostgresServer",
    "TinyCNN",
    "TinyMLP",
    "chromium_dom",
    "loader",
    "random_classification",
]
