"""Tiny classifiers: plain, with batch norm and dropout, and one with a planted fault."""

from __future__ import annotations

import torch
from torch import nn


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


class BNNet(nn.Module):
    """A tiny CNN with batch norm and dropout: buffers, modes and RNG use all change in a step.

    The model to prove that something restores a model exactly (``tunekit.sanity.preserved``).
    """

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
    """A model whose output does not depend on its input (a planted fault for the probes)."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(1, num_classes)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.ones(len(x), 1, device=x.device))
