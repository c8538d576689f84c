"""The loop, its hooks, schedules, distributed setup and checkpoints."""

from ._checkpoint import load_checkpoint, rng_state, save_atomic, seed_everything, set_rng_state
from ._distributed import (
    DistInfo,
    all_reduce_sum,
    any_rank,
    barrier,
    broadcast_object,
    init_distributed,
    launch,
    resolve_device,
    shutdown_distributed,
)
from ._hooks import HookBase
from ._optim import build_optimizer, effective_lr, param_groups
from ._phases import Phase, PhaseHook, PhaseSetup, phase_at, phase_starts
from ._schedules import SCHEDULES, build_scheduler, make_lr_factor
from ._trainer import Task, Trainer

__all__ = [
    "SCHEDULES",
    "DistInfo",
    "HookBase",
    "Phase",
    "PhaseHook",
    "PhaseSetup",
    "Task",
    "Trainer",
    "all_reduce_sum",
    "any_rank",
    "barrier",
    "broadcast_object",
    "build_optimizer",
    "build_scheduler",
    "effective_lr",
    "init_distributed",
    "launch",
    "load_checkpoint",
    "make_lr_factor",
    "param_groups",
    "phase_at",
    "phase_starts",
    "resolve_device",
    "rng_state",
    "save_atomic",
    "seed_everything",
    "set_rng_state",
    "shutdown_distributed",
]
