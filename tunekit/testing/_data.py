"""Tiny datasets, their loaders, and a recipe that trains on them in seconds."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from tunekit.config import Recipe, validate
from tunekit.data import DataBundle


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
    """A deterministic DataLoader over ``dataset`` (a shuffling one has its own generator)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed),
    )


class Jittered(Dataset):
    """A dataset whose items get random noise from the global RNG, like a random augmentation."""

    def __init__(self, base: Dataset, scale: float = 0.1) -> None:
        self.base, self.scale = base, scale

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.base[i]
        return x + self.scale * torch.randn_like(x), y


def tiny_data(
    num_classes: int = 4, n_train: int = 192, n_val: int = 64, jitter: float = 0.1
) -> DataBundle:
    """Learnable 1x8x8 images in ``num_classes`` classes; training items are jittered at random.

    A data builder: ``data.builder: tunekit.testing:tiny_data`` in a recipe.
    """
    # One draw, split: the same class means, different noise.
    x, y = random_classification(n_train + n_val, num_classes, seed=0).tensors
    train = TensorDataset(x[:n_train], y[:n_train])
    val = TensorDataset(x[n_train:], y[n_train:])
    return DataBundle(
        train=Jittered(train, jitter), val=val, num_classes=num_classes, in_channels=1
    )


TINY_RECIPE: dict[str, Any] = {
    "name": "tiny",
    "data": {"builder": "tunekit.testing:tiny_data", "kwargs": {}},
    "model": {"name": "small_cnn", "width": 4, "norm": "bn"},
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "schedule": {"name": "cosine"},
    "train": {"epochs": 3, "batch_size": 32, "device": "cpu"},
    "diagnostics": {"enabled": False},
}


def tiny_recipe(out: Path, **sections: Any) -> Recipe:
    """A recipe that trains on :func:`tiny_data` in seconds, writing under ``out / "runs"``;
    ``sections`` are merged in one level deep.

    Example:
        >>> recipe = tiny_recipe(tmp_path, train={"epochs": 1})  # doctest: +SKIP
    """
    data = copy.deepcopy(TINY_RECIPE)
    data["output_dir"] = str(out / "runs")
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return validate(Recipe, data)
