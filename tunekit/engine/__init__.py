"""The loop, its hooks, optimizers, schedules and phases (on top of ``tunekit.core``)."""

from ._hooks import HookBase
from ._optim import build_optimizer, effective_lr, param_groups
from ._phases import Phase, PhaseHook, PhaseSetup, phase_at, phase_starts
from ._schedules import SCHEDULES, build_scheduler, make_lr_factor
from ._trainer import Task, Trainer

__all__ = [
    "SCHEDULES",
    "HookBase",
    "Phase",
    "PhaseHook",
    "PhaseSetup",
    "Task",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "effective_lr",
    "make_lr_factor",
    "param_groups",
    "phase_at",
    "phase_starts",
]
