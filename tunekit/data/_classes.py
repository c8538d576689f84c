"""``data.classes``: a held-apart subset of a dataset's classes, relabelled 0..k-1.

Transfer experiments need a source and a target that share a domain and not
their classes: pretrain on digits 0-4, transfer to digits 5-9. Any
classification dataset can be split so; the labels are read from the dataset's
``labels`` or ``targets`` when it has them, otherwise from its items once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from torch.utils.data import Dataset, Subset

from tunekit.errors import ConfigError

from ._base import DataBundle


def dataset_labels(ds: Dataset[Any]) -> list[int]:
    """The class index of every item of a classification dataset, in order."""
    n = len(ds)  # type: ignore[arg-type]
    if isinstance(ds, Subset):
        inner = dataset_labels(ds.dataset)
        return [inner[i] for i in ds.indices]
    for attr in ("labels", "targets"):
        values = getattr(ds, attr, None)
        if values is not None and len(values) == n:
            return [int(v) for v in values]
    labels = []
    for i in range(n):
        item = ds[i]
        label = item[1] if isinstance(item, (tuple, list)) and len(item) == 2 else None
        try:
            labels.append(int(label))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(
                f"needs a class index per item, and item {i} of the dataset is "
                f"{type(item).__name__} with label {type(label).__name__}",
                field="data.classes",
            ) from None
    return labels


class ClassSubset(Dataset[tuple[Any, int]]):
    """The items of ``ds`` whose label is a key of ``mapping``, with the label mapped."""

    def __init__(self, ds: Dataset[Any], labels: Sequence[int], mapping: dict[int, int]) -> None:
        self.dataset, self.mapping = ds, mapping
        self.indices = [i for i, y in enumerate(labels) if y in mapping]
        self.labels = [mapping[labels[i]] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        x, _ = self.dataset[self.indices[i]]
        return x, self.labels[i]


def keep_classes(bundle: DataBundle, classes: Sequence[int]) -> DataBundle:
    """``bundle`` with only ``classes``, relabelled 0..k-1 in the order given.

    Example:
        >>> target = keep_classes(build_data(DataConfig(name="digits")), [5, 6, 7, 8, 9])  # doctest: +SKIP
        >>> target.num_classes, target.class_names  # doctest: +SKIP
        (5, ['5', '6', '7', '8', '9'])
    """
    n = bundle.num_classes
    outside = [c for c in classes if c >= n]
    if outside:
        raise ConfigError(
            f"class {outside[0]} is not in the dataset: it has {n} classes, 0 to {n - 1}",
            field="data.classes",
        )
    mapping = {c: i for i, c in enumerate(classes)}
    train = ClassSubset(bundle.train, dataset_labels(bundle.train), mapping)
    val = ClassSubset(bundle.val, dataset_labels(bundle.val), mapping)
    for split, ds in (("training", train), ("validation", val)):
        if len(ds) == 0:
            raise ConfigError(
                f"the {split} set has no item of classes {list(classes)}", field="data.classes"
            )
    names = bundle.class_names
    return dataclasses.replace(
        bundle,
        train=train,
        val=val,
        num_classes=len(classes),
        class_names=[names[c] for c in classes] if names else None,
    )
