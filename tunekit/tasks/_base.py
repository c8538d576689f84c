"""The contract of a task (``recipe.task``): what each kind of model brings to a run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from torch import nn

    from tunekit.config import Recipe
    from tunekit.core import DistInfo
    from tunekit.data import DataBundle
    from tunekit.engine import HookBase, Task


@dataclass(frozen=True)
class HeadPrior:
    """What one loss term, or a head's mean output probability, should be at initialisation.

    ``kind`` is "softmax" or "sigmoid" (a loss term against ``expected``), "focal_prior" (the
    mean foreground probability of ``layer`` against ``expected``; ``bias_prob`` is what its
    bias alone sets) or "unchecked" (``expected`` is None and ``note`` says why).
    """

    name: str
    kind: str
    measured: float
    expected: float | None
    note: str = ""
    layer: str = ""
    bias_prob: float | None = None


class HeadProbe(Protocol):
    """Watches a model's heads through the initial-loss check's forward passes."""

    def priors(
        self, terms: dict[str, float], num_classes: int | None, focal_prior: float
    ) -> list[HeadPrior]:
        """Each of the mean loss ``terms`` (and any watched head) with its expectation."""

    def remove(self) -> None:
        """Takes the probe's forward hooks off the model."""


class TaskSpec:
    """One kind of model: its data and model builders, its trainer task, its metrics, and
    what the sanity checks, phases and ensembles need to know of it.

    The defaults suit a task that has nothing of its own to say; each task overrides the rest.
    """

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
        """Freezes the stages up to ``recipe.model.freeze_to`` and unfreezes the others; by
        default the stages frozen when the model was built stay so."""

    def probe_loss(self, recipe: Recipe, task: Task) -> nn.Module | None:
        """The loss the sanity probes apply to the logits; None: the task's own loss terms."""
        return None

    def head_probe(self, model: nn.Module) -> HeadProbe | None:
        """A probe of the model's heads for the initial-loss check; None: its loss alone."""
        return None
