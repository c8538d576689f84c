"""Phases of one run: a linear probe, then fine-tuning at a lower LR, in one run directory.

A run with phases is one trainer, one checkpoint stream and one record
stream; what changes at a phase's end is what trains and how: the frozen
stages, the optimizer (rebuilt for the parameters that now train) and the
schedule (restarted over the new phase's epochs, warmup included).

Time decides the phase: epoch ``e`` (counting finished epochs) falls in the
phase that covers it, and the switch happens at the end of a phase's last
epoch, before that epoch's checkpoint is written. So every checkpoint holds
the optimizer and schedule of the phase its epoch falls in, a run resumed
from any checkpoint (one taken exactly at a boundary too) is built for that
phase (:func:`phase_at`) and continues bit for bit.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tunekit.errors import CheckpointError

from ._hooks import HookBase

log = logging.getLogger("tunekit.engine")


@dataclass(frozen=True)
class Phase:
    """One phase: its name, its length and, for the records, what it sets."""

    name: str
    epochs: int
    settings: str = ""  # "model.freeze_to=layer3, optim.lr=0.1"


def phase_starts(phases: Sequence[Phase]) -> list[int]:
    """The epoch each phase starts at (finished epochs before it)."""
    starts, at = [], 0
    for p in phases:
        starts.append(at)
        at += p.epochs
    return starts


def phase_at(phases: Sequence[Phase], epoch: int) -> int:
    """The index of the phase that epoch ``epoch`` (0-based: finished epochs so far) falls in.

    Past the last phase's end it is the last phase (a finished run).

    Example:
        >>> phase_at([Phase("probe", 5), Phase("finetune", 10)], 5)
        1
    """
    if not phases:
        raise ValueError("no phases")
    for i, start in enumerate(phase_starts(phases)):
        if epoch < start + phases[i].epochs:
            return i
    return len(phases) - 1


@dataclass
class PhaseSetup:
    """What a phase trains with, from :class:`PhaseHook`'s ``enter``.

    ``grad_clip`` is the phase's gradient clipping (None: none). ``model`` is
    a new DDP wrapper when the trainable parameters changed under DDP (the old
    one reduces the old set only); ``task`` a task with the phase's
    regularisation; None keeps the trainer's.
    """

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    grad_clip: float | None = None
    model: nn.Module | None = None
    task: Any = None


class PhaseHook(HookBase):
    """Switches the trainer from one phase to the next at the end of each phase's last epoch.

    ``enter(i)`` puts the model in phase ``i``'s state (its frozen stages) and
    builds what it trains with; the hook hands that to the trainer and then
    calls every hook's ``after_phase_switch`` (hooks that keep the trainable
    parameters or the optimizer refresh there). The trainer must have been
    built for phase ``index``, the phase of the epoch it starts (or resumes) at.

    Records: an event at the start of each phase (``"event": "phase"``, with
    its name, index and epochs), and ``phase`` (the index) in every epoch record.

    Args:
        phases: the phases, in order; their epochs add up to the trainer's.
        enter: builds phase ``i``; called at each switch.
        index: the phase the trainer was built for.
    """

    # Before the writers (the epoch record carries the phase) and the checkpoint (it saves
    # the next phase's optimizer when this epoch ends one).
    priority = 70

    def __init__(
        self, phases: Sequence[Phase], enter: Callable[[int], PhaseSetup], *, index: int = 0
    ) -> None:
        if not phases:
            raise ValueError("PhaseHook needs at least one phase")
        self.phases = list(phases)
        self.enter = enter
        self.index = index
        self.starts = phase_starts(self.phases)

    @property
    def phase(self) -> Phase:
        """The phase the trainer is in."""
        return self.phases[self.index]

    def before_train(self) -> None:
        t = self.trainer
        expected = phase_at(self.phases, t.epoch)
        if expected != self.index:
            raise RuntimeError(
                f"the trainer was built for phase {self.index} ({self.phase.name!r}) but starts at "
                f"epoch {t.epoch}, in phase {expected}: build it for the epoch it resumes at "
                "(tunekit.run.build_trainer(..., start_epoch=...))"
            )
        if t.step == 0 and t.epoch == 0:
            self._announce()

    def after_epoch(self) -> None:
        t = self.trainer
        self.metrics.put_epoch("phase", float(self.index))
        following = phase_at(self.phases, t.epoch)
        if following != self.index and t.epoch < t.epochs:
            self.switch(following)

    def switch(self, index: int) -> None:
        """Enters phase ``index`` now: frozen stages, optimizer, schedule (and DDP wrapper, task)."""
        t = self.trainer
        setup = self.enter(index)
        t.optimizer, t.scheduler = setup.optimizer, setup.scheduler
        t.grad_clip = setup.grad_clip
        if setup.model is not None:
            t.model = setup.model
            gc.collect()  # the old wrapper's gradient hooks go with it, now
        if setup.task is not None:
            t.task = setup.task
        self.index = index
        for hook in t.hooks:
            hook.after_phase_switch()
        self._announce()

    def _announce(self) -> None:
        t = self.trainer
        p, start = self.phase, self.starts[self.index]
        message = (
            f"phase {self.index + 1}/{len(self.phases)} {p.name!r}: epochs {start + 1}-"
            f"{start + p.epochs}" + (f", {p.settings}" if p.settings else "")
        )
        log.info("%s", message)
        self.metrics.event(
            "phase",
            message,
            step=t.step,
            phase=p.name,
            index=self.index,
            epochs=p.epochs,
            start_epoch=start,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.phase.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        index, name = state.get("index"), state.get("name")
        if index != self.index or name != self.phase.name:
            built = f"{self.index} ({self.phase.name!r})"
            raise CheckpointError(
                f"the checkpoint was taken in phase {index} ({name!r}) and the trainer is built "
                f"for phase {built}: resume with the recipe the checkpoint was trained with",
                field="phases",
            )
