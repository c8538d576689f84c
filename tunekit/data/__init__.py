"""Datasets by name (or a user's builder) and the loaders the trainer uses."""

from ._base import DataBundle, check_call, import_builder
from ._build import DATASETS, build_data, build_loaders, subset_every
from ._classes import dataset_labels, keep_classes

__all__ = [
    "DATASETS",
    "DataBundle",
    "build_data",
    "build_loaders",
    "check_call",
    "dataset_labels",
    "import_builder",
    "keep_classes",
    "subset_every",
]
