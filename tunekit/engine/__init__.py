"""The loop, its hooks and metrics store, optimizers, schedules and phases (on top of ``tunekit.core``)."""

from typing import TYPE_CHECKING

from tunekit._lazy import attach

if TYPE_CHECKING:
    from ._builtin_hooks import CheckpointHook, EarlyStopping, MetricsWriter
    from ._hooks import HookBase
    from ._metrics import WRITE_PRIORITY, MetricsStore, Record
    from ._optim import base_lr, build_optimizer, effective_lr, param_groups
    from ._phases import Phase, PhaseHook, PhaseSetup, phase_at, phase_starts
    from ._progress import ProgressHook, worst_layers
    from ._schedules import SCHEDULES, build_scheduler, make_lr_factor, sgdr_cycle
    from ._trainer import Task, Trainer
else:
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
