"""Tiny datasets for the averaging and ensemble tests (a recipe's ``data.builder`` points here)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset

from tunekit.config import Recipe, validate
from tunekit.data import DataBundle
from tunekit.testing import random_classification


class Jittered(Dataset):
    """A dataset whose items get random noise from the global RNG, like a random augmentation."""

    def __init__(self, base: Dataset, scale: float = 0.1) -> None:
        self.base, self.scale = base, scale

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return x + self.scale * torch.randn_like(x), y


def tiny(
    num_classes: int = 4, n_train: int = 192, n_val: int = 64, jitter: float = 0.1
) -> DataBundle:
    """Learnable 1x8x8 images in ``num_classes`` classes; training items are jittered at random."""
    # One draw, split: the same class means, different noise.
    x, y = random_classification(n_train + n_val, num_classes, seed=0).tensors
    train = TensorDataset(x[:n_train], y[:n_train])
    val = TensorDataset(x[n_train:], y[n_train:])
    return DataBundle(
        train=Jittered(train, jitter), val=val, num_classes=num_classes, in_channels=1
    )


TINY: dict[str, Any] = {
    "name": "tiny",
    "data": {"builder": "averaging_data:tiny", "kwargs": {}},
    "model": {"name": "small_cnn", "width": 4, "norm": "bn"},
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "schedule": {"name": "cosine"},
    "train": {"epochs": 3, "batch_size": 32, "device": "cpu"},
    "diagnostics": {"enabled": False},
}


def tiny_recipe(tmp: Path, **sections: Any) -> Recipe:
    """The tiny recipe with sections merged in (one level deep)."""
    data = copy.deepcopy(TINY)
    data["output_dir"] = str(tmp / "runs")
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return validate(Recipe, data)
