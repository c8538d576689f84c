"""Classification datasets: digits (bundled), imagefolder and cifar10 (local roots)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2

from tunekit.config import DataConfig
from tunekit.errors import DataError

from ._base import DataBundle

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def train_transform(cfg: DataConfig, mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    """Augmentation on uint8 images (torchvision v2), then float and normalise."""
    aug = cfg.augment
    ops: list[Any] = [v2.ToImage(), v2.Resize((cfg.image_size, cfg.image_size), antialias=True)]
    if aug.random_crop_padding:
        ops.append(v2.RandomCrop(cfg.image_size, padding=aug.random_crop_padding))
    if aug.hflip:
        ops.append(v2.RandomHorizontalFlip())
    if aug.randaugment:
        ops.append(v2.RandAugment(magnitude=aug.randaugment_magnitude))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    if aug.random_erasing > 0:
        ops.append(v2.RandomErasing(p=aug.random_erasing))
    return v2.Compose(ops)


def eval_transform(cfg: DataConfig, mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((cfg.image_size, cfg.image_size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


class TensorImages(Dataset[tuple[torch.Tensor, int]]):
    """uint8 images held in memory (N, C, H, W) with labels, transformed on access."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Any = None) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[i])


def digits(cfg: DataConfig) -> DataBundle:
    """scikit-learn's 1,797 8x8 handwritten digits, upscaled, with a fixed stratified split.

    The split does not depend on the recipe's seed, so runs with different
    seeds are compared on the same validation images.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    images = torch.from_numpy((d.images / 16.0 * 255.0).round().astype(np.uint8))[:, None]
    # Resize once, here, with a smooth filter: the 8x8 originals are tiny.
    images = (
        F.interpolate(
            images.float(),
            size=(cfg.image_size, cfg.image_size),
            mode="bilinear",
            align_corners=False,
        )
        .round()
        .clamp(0, 255)
        .to(torch.uint8)
    )
    labels = torch.from_numpy(d.target.astype(np.int64))
    idx_train, idx_val = train_test_split(
        np.arange(len(labels)), test_size=cfg.val_fraction, random_state=0, stratify=d.target
    )
    mean, std = (0.25,), (0.35,)
    return DataBundle(
        train=TensorImages(images[idx_train], labels[idx_train], train_transform(cfg, mean, std)),
        val=TensorImages(images[idx_val], labels[idx_val], eval_transform(cfg, mean, std)),
        num_classes=10,
        in_channels=1,
        class_names=[str(i) for i in range(10)],
    )


def _require_root(cfg: DataConfig, what: str) -> Path:
    if not cfg.root:
        raise DataError(
            f"the {what} dataset needs a local root; set it with --set data.root=/path/to/{what}",
            field="data.root",
        )
    root = Path(cfg.root).expanduser()
    if not root.exists():
        raise DataError(
            f"dataset path {str(root)!r} does not exist; point to it with --set data.root=/path/to/{what}",
            field="data.root",
        )
    return root


def imagefolder(cfg: DataConfig) -> DataBundle:
    """A local ``ImageFolder`` tree: ``root/train`` and ``root/val``, or one tree split by val_fraction."""
    root = _require_root(cfg, "imagefolder")
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    tr, ev = train_transform(cfg, mean, std), eval_transform(cfg, mean, std)
    try:
        if (root / "train").is_dir() and (root / "val").is_dir():
            train = datasets.ImageFolder(str(root / "train"), transform=tr)
            val = datasets.ImageFolder(str(root / "val"), transform=ev)
            classes = train.classes
        else:
            full_tr = datasets.ImageFolder(str(root), transform=tr)
            full_ev = datasets.ImageFolder(str(root), transform=ev)
            g = torch.Generator().manual_seed(0)
            perm = torch.randperm(len(full_tr), generator=g).tolist()
            n_val = max(1, int(len(perm) * cfg.val_fraction))
            train = torch.utils.data.Subset(full_tr, perm[n_val:])
            val = torch.utils.data.Subset(full_ev, perm[:n_val])
            classes = full_tr.classes
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(
            f"cannot read an image folder at {str(root)!r}: {exc}", field="data.root"
        ) from None
    return DataBundle(
        train=train, val=val, num_classes=len(classes), in_channels=3, class_names=list(classes)
    )


def cifar10(cfg: DataConfig) -> DataBundle:
    """CIFAR-10 from torchvision's files under a local root (never downloaded)."""
    root = _require_root(cfg, "cifar10")
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    try:
        train = datasets.CIFAR10(
            str(root), train=True, download=False, transform=train_transform(cfg, mean, std)
        )
        val = datasets.CIFAR10(
            str(root), train=False, download=False, transform=eval_transform(cfg, mean, std)
        )
    except RuntimeError:
        raise DataError(
            f"no CIFAR-10 files under {str(root)!r} (expected cifar-10-batches-py/); "
            "tunekit never downloads data: unpack it there or --set data.root=...",
            field="data.root",
        ) from None
    return DataBundle(
        train=train, val=val, num_classes=10, in_channels=3, class_names=list(train.classes)
    )
