"""From a recipe's ``data`` section to datasets and loaders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset

from tunekit.config import DataConfig
from tunekit.core import DistInfo
from tunekit.errors import ConfigError, in_file, unknown_choice

from ._base import DataBundle, check_call, import_builder
from ._classes import keep_classes
from ._classification import cifar10, digits, imagefolder
from ._tags import shapes_tags

#: Named datasets: name -> builder(DataConfig) -> DataBundle.
DATASETS: dict[str, Callable[[DataConfig], DataBundle]] = {
    "digits": digits,
    "imagefolder": imagefolder,
    "cifar10": cifar10,
    # Weakly labelled (multi-label tags) shapes images, for task: multilabel.
    "shapes_tags": shapes_tags,
}


def build_data(cfg: DataConfig, *, file: str | None = None) -> DataBundle:
    """The datasets a recipe names, or what its ``builder`` returns."""
    if cfg.builder:
        fn = import_builder(cfg.builder, field_name="data.builder", file=file)
        check_call(fn, (), cfg.kwargs, field="data.kwargs", file=file)
        out = fn(**cfg.kwargs)
        if isinstance(out, DataBundle):
            bundle = out
        elif isinstance(out, tuple) and len(out) == 3:
            bundle = DataBundle(train=out[0], val=out[1], num_classes=int(out[2]))
        else:
            raise ConfigError(
                f"builder {cfg.builder!r} returned {type(out).__name__}; "
                "return a DataBundle or (train_dataset, val_dataset, num_classes)",
                file=file,
                field="data.builder",
            )
    else:
        if cfg.name not in DATASETS:
            raise unknown_choice("dataset", cfg.name, DATASETS, file=file, field="data.name")
        with in_file(file):
            bundle = DATASETS[cfg.name](cfg)
    if cfg.classes:
        with in_file(file):
            bundle = keep_classes(bundle, cfg.classes)
    if cfg.train_subset:
        bundle.train = subset_every(bundle.train, cfg.train_subset)
    if cfg.val_subset:
        bundle.val = subset_every(bundle.val, cfg.val_subset)
    return bundle


def subset_every(ds: Dataset[Any], n: int) -> Dataset[Any]:
    """A fixed, spread-out subset of ``n`` items (every k-th), the same for every seed."""
    total = len(ds)  # type: ignore[arg-type]
    if n >= total:
        return ds
    step = total / n
    return Subset(ds, [int(i * step) for i in range(n)])


class ShardSampler(Sampler[int]):
    """Rank ``r`` of ``w`` reads items r, r+w, r+2w, ... in order, with no padding.

    DistributedSampler pads the last shard with repeated items; for evaluation
    that would count some images twice, so validation uses this instead.
    """

    def __init__(self, size: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, size, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_loaders(
    bundle: DataBundle, cfg: DataConfig, *, batch_size: int, seed: int, dist: DistInfo
) -> tuple[DataLoader[Any], DataLoader[Any]]:
    """Training and validation loaders; ``batch_size`` is global, split over ranks.

    Training always goes through a DistributedSampler (a world of one too), so
    one process and N processes draw the same global batches for a seed.
    """
    if batch_size % dist.world_size:
        raise ConfigError(
            f"value {batch_size} is not allowed: the global batch must divide evenly "
            f"over {dist.world_size} processes",
            field="train.batch_size",
        )
    per_rank = batch_size // dist.world_size
    n_train = len(bundle.train)  # type: ignore[arg-type]
    if n_train < batch_size:
        raise ConfigError(
            f"value {batch_size} is not allowed: larger than the training set ({n_train} items)",
            field="train.batch_size",
        )
    sampler: DistributedSampler[Any] = DistributedSampler(
        bundle.train,
        num_replicas=dist.world_size,
        rank=dist.rank,
        shuffle=True,
        seed=seed,
        drop_last=True,
    )
    pin = dist.device.type == "cuda"
    common: dict[str, Any] = {
        "num_workers": cfg.num_workers,
        "collate_fn": bundle.collate_fn,
        "pin_memory": pin,
        "persistent_workers": cfg.num_workers > 0,
    }
    train = DataLoader(
        bundle.train,
        batch_size=per_rank,
        sampler=sampler,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
        **common,
    )
    val = DataLoader(
        bundle.val,
        batch_size=max(per_rank, 1),
        sampler=ShardSampler(len(bundle.val), dist.rank, dist.world_size),  # type: ignore[arg-type]
        **common,
    )
    return train, val
