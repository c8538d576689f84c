"""The hook contract: everything optional in training is a hook.

Lifecycle, in the order a trainer calls it::

    before_train()
      for each epoch:
        before_epoch()
          for each step:
            before_step()
            (forward, backward)
            after_backward()      # gradients exist, optimizer not stepped yet
            (clip, optimizer.step, scheduler.step)
            after_step()
        (evaluation, when due: trainer.last_eval is filled)
        after_epoch()
          after_phase_switch()    # phases: an epoch that ends a phase, before its checkpoint
    after_train()                 # also runs when training raised

A hook holds a weak reference to its trainer (``self.trainer``), never owns it,
and keeps its own state in ``state_dict``/``load_state_dict`` so checkpoints
carry it. Hooks run in the order given; ``priority`` (lower first) lets a
writer run after the hooks that produce what it writes.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

    def bind(self, trainer: Trainer) -> None:
        self._trainer_ref = weakref.ref(trainer)

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
