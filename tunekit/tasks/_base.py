"""The contract of a task (``recipe.task``) and the registry of the tasks by name."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from tunekit.errors import unknown_choice

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from torch import nn

    from tunekit.config import Recipe
    from tunekit.core import DistInfo
    from tunekit.data import DataBundle
    from tunekit.engine import HookBase, Task


@dataclass(frozen=True)
class HeadPrior:
    """A loss term ("softmax", "sigmoid"), or the mean foreground probability of a focal head
    ``layer`` ("focal_prior"; ``bias_prob``: what its bias alone sets), against what it should
    be at initialisation; "unchecked" has no ``expected`` and a ``note`` that says why."""

    name: str
    kind: str
    measured: float
    expected: float | None
    note: str = ""
    layer: str = ""
    bias_prob: float | None = None


class HeadProbe(Protocol):
    """Watches a model's heads through the initial-loss check's forward passes; then gives each
    mean loss term (and any watched head) with its expectation, and takes its hooks off."""

    def priors(
        self, terms: dict[str, float], classes: int | None, prior: float
    ) -> list[HeadPrior]: ...
    def remove(self) -> None: ...


class TaskSpec:
    """One kind of model: its data and model builders, its trainer task and metrics, and what
    phases, sanity checks and ensembles need to know of it. The defaults say nothing of their own."""

    #: The recipe's ``task`` value.
    name: ClassVar[str]
    #: Why ``averaging.snapshots`` is refused for this task (None: allowed).
    no_snapshots: ClassVar[str | None] = None
    #: Why ensembles and exports of this task's runs are refused (None: allowed).
    no_ensembles: ClassVar[str | None] = None

    def metric_names(self, recipe: Recipe) -> tuple[str, ...]:
        """The ``val/...`` keys the task's evaluation gives, without building anything."""
        raise NotImplementedError

    def build(
        self, recipe: Recipe, dist: DistInfo, *, channels_last: bool, file: str | None
    ) -> tuple[DataBundle, nn.Module, Task]:
        """The data bundle, the model (on the CPU, not wrapped) and the trainer's task."""
        raise NotImplementedError

    def phase_task(self, task: Task, recipe: Recipe, index: int) -> Task:
        """``task`` as phase ``index`` of ``recipe`` wants it (``task`` itself when unchanged)."""
        return task

    def hooks(self, recipe: Recipe, run_dir: Path) -> list[HookBase]:
        """The hooks every run of this task has."""
        return []

    def stages(self, recipe: Recipe, model: nn.Module | None) -> dict[str, tuple[str, ...]]:
        """The model's stages from the input on (``optim.layer_decay``); empty when unknown."""
        return {}

    def set_frozen_stages(self, model: nn.Module, recipe: Recipe, *, file: str | None) -> None:
        """Freezes the stages up to ``model.freeze_to``, unfreezes the others (by default none)."""

    def probe_loss(self, recipe: Recipe, task: Task) -> nn.Module | None:
        """The loss the sanity probes apply to the logits; None: the task's own loss terms."""
        return None

    def head_probe(self, model: nn.Module) -> HeadProbe | None:
        """A probe of the model's heads for the initial-loss check; None: its loss alone."""
        return None


def _spec(module: str, name: str) -> Callable[[], TaskSpec]:
    # By name: a task's module (detection: torchvision's detectors, pycocotools) loads only when
    # a recipe asks for it, and it may build on this package, which does not import it.
    return lambda: getattr(importlib.import_module(module), name)()


#: Each task's spec by its ``recipe.task`` name.
TASKS: dict[str, Callable[[], TaskSpec]] = {
    "classification": _spec("tunekit.tasks._classification", "ClassificationSpec"),
    "multilabel": _spec("tunekit.tasks._multilabel", "MultilabelSpec"),
    "detection": _spec("tunekit.detection", "DetectionSpec"),
}


def get_task(name: str) -> TaskSpec:
    """The spec of the task named ``name`` (``recipe.task``)."""
    if name not in TASKS:
        raise unknown_choice("task", name, TASKS, field="task")
    return TASKS[name]()
