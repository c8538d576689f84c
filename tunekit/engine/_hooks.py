"""The hook contract: everything optional in training is a hook.

Lifecycle, in the order it is called::

    setup_model(model)            # once, by the run builder, before the DDP wrap
    before_train()
      for each epoch:
        before_epoch()
          for each step:
            before_step()
            (forward, backward)
            after_backward()      # gradients exist, optimizer not stepped yet
            (clip, optimizer.step, scheduler.step)
            after_step()          # the step's record is closed at priority 75
        (evaluation, when due: the epoch record and metrics.last_eval are filled)
        after_epoch()             # side models put theirs; the record is closed at 75
          after_phase_switch()    # phases: an epoch that ends a phase, before its checkpoint
    after_train()                 # also runs when training raised

A hook holds a weak reference to its trainer (``self.trainer``), never owns it,
and keeps its own state in ``state_dict``/``load_state_dict`` so checkpoints
carry it. Values travel through the trainer's metrics store (``self.metrics``):
producers put them, writers subscribe to it; hooks never look each other up.
Hooks run in the order given; ``priority`` (lower first) puts producers before
the store closes a record (75) and writers and checkpoints after it.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from ._metrics import MetricsStore
    from ._trainer import Trainer


class HookBase:
    """Base class for trainer hooks; override only the methods you need."""

    #: lower runs first; writers and checkpointing run late.
    priority: int = 50

    _trainer_ref: weakref.ReferenceType[Trainer] | None = None

    @property
    def name(self) -> str:
        """Key of this hook's state in a checkpoint."""
        return type(self).__name__

    @property
    def trainer(self) -> Trainer:
        trainer = self._trainer_ref() if self._trainer_ref is not None else None
        if trainer is None:
            raise RuntimeError(f"{self.name} is not registered with a live trainer")
        return trainer

    @property
    def metrics(self) -> MetricsStore:
        """The trainer's metrics store."""
        return self.trainer.metrics

    def bind(self, trainer: Trainer) -> None:
        self._trainer_ref = weakref.ref(trainer)

    def setup_model(self, model: nn.Module) -> None:
        """The model as built, on its device and before the DDP wrap (a hook that keeps a
        copy of it, such as an EMA, makes the copy here); called once, before the trainer."""

    def before_train(self) -> None: ...

    def after_train(self) -> None: ...

    def before_epoch(self) -> None: ...

    def after_epoch(self) -> None: ...

    def before_step(self) -> None: ...

    def after_backward(self) -> None: ...

    def after_step(self) -> None: ...

    def after_phase_switch(self) -> None:
        """The trainer entered a new phase (``phases:`` in a recipe): its optimizer, scheduler
        and trainable parameters are new (and, under DDP, its model wrapper). A hook that
        keeps any of them refreshes here."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None
