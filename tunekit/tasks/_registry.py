"""The tasks by ``recipe.task`` name."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from tunekit.errors import unknown_choice

from ._base import TaskSpec
from ._classification import ClassificationSpec
from ._multilabel import MultilabelSpec


def _detection() -> TaskSpec:
    # By name: torchvision's detectors and pycocotools load only for a detection recipe, and
    # tunekit.detection builds on this package, which therefore does not import it.
    return cast(TaskSpec, importlib.import_module("tunekit.detection").DetectionSpec())


#: Each task's spec by its ``recipe.task`` name.
TASKS: dict[str, Callable[[], TaskSpec]] = {
    "classification": ClassificationSpec,
    "multilabel": MultilabelSpec,
    "detection": _detection,
}


def get_task(name: str) -> TaskSpec:
    """The spec of the task named ``name`` (``recipe.task``)."""
    if name not in TASKS:
        raise unknown_choice("task", name, TASKS, field="task")
    return TASKS[name]()
