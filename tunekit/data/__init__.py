"""Datasets by name (or a user's builder) and the loaders the trainer uses."""

from typing import TYPE_CHECKING

from tunekit._lazy import attach

if TYPE_CHECKING:
    from ._base import DataBundle, check_call, import_builder
    from ._build import DATASETS, build_data, build_loaders, subset_every
    from ._classes import dataset_labels, keep_classes
else:
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
