"""Datasets by name (or a user's builder) and the loaders the trainer uses."""

from ._base import DataBundle, import_builder
from ._build import DATASETS, build_data, build_loaders, subset_every

__all__ = [
    "DATASETS",
    "DataBundle",
    "build_data",
    "build_loaders",
    "import_builder",
    "subset_every",
]
