"""A tiny multi-label problem that a small network learns in about a second, and its model."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from tunekit.data import DataBundle

C = 6


def tiny_tags(
    n_train: int = 512,
    n_val: int = 256,
    num_classes: int = C,
    seed: int = 0,
    p: float = 0.3,
) -> DataBundle:
    """8x8 one-channel images: each tag present adds its own fixed pattern, plus noise.

    Tags are drawn independently with probability ``p`` (an image may have none).
    """
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(num_classes, 1, 8, 8, generator=g)

    def split(n: int) -> Dataset[tuple[torch.Tensor, torch.Tensor]]:
        y = (torch.rand(n, num_classes, generator=g) < p).float()
        x = torch.einsum("nc,chwd->nhwd", y, patterns) + 0.5 * torch.randn(n, 1, 8, 8, generator=g)
        return TensorDataset(x, y)

    return DataBundle(
        train=split(n_train), val=split(n_val), num_classes=num_classes, in_channels=1
    )


def tiny_net(num_classes: int = C) -> nn.Module:
    """A small MLP with a final ``fc`` layer (where the initial-loss check looks)."""
    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module("flat", nn.Flatten())
    net.add_module("hidden", nn.Linear(64, 32))
    net.add_module("act", nn.ReLU())
    net.add_module("fc", nn.Linear(32, num_classes))
    return net


def tags_as_indices(num_classes: int = 4, bad: int | None = None) -> DataBundle:
    """Targets given as lists of tag indices (as a user's dataset may); ``bad`` plants an
    index out of range in the third training item."""

    class Indexed(Dataset[tuple[torch.Tensor, list[int]]]):
        def __init__(self, n: int, plant: bool) -> None:
            self.n, self.plant = n, plant

        def __len__(self) -> int:
            return self.n

        def __getitem__(self, i: int) -> tuple[torch.Tensor, list[int]]:
            tags = [i % num_classes, (i + 1) % num_classes]
            if self.plant and i == 2 and bad is not None:
                tags = [bad]
            return torch.full((1, 8, 8), float(i % num_classes)), tags

    return DataBundle(
        train=Indexed(64, True), val=Indexed(32, False), num_classes=num_classes, in_channels=1
    )
