"""What each kind of model brings to the loop: its losses and its metrics."""

from ._classification import ClassificationTask
from ._multilabel import (
    LOSSES,
    MultiHotTargets,
    MultilabelSoftmaxLoss,
    MultilabelTask,
    average_precision,
    build_loss,
    mean_average_precision,
    multi_hot_dataset,
    precision_at_k,
    to_multi_hot,
)
from ._tta import VIEWS, TTAHook, TTAModel, five_crops, tta_views

__all__ = [
    "LOSSES",
    "VIEWS",
    "ClassificationTask",
    "MultiHotTargets",
    "MultilabelSoftmaxLoss",
    "MultilabelTask",
    "TTAHook",
    "TTAModel",
    "average_precision",
    "build_loss",
    "five_crops",
    "mean_average_precision",
    "multi_hot_dataset",
    "precision_at_k",
    "to_multi_hot",
    "tta_views",
]
