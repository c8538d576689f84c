"""Learning-rate schedules as pure functions of the step.

Time is explicit: ``lr_factor(step)`` maps a global iteration to a multiplier
of the peak LR. ``torch.optim.lr_scheduler.LambdaLR`` applies it, stepping once
per iteration, so its state in a checkpoint is just the step count.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from tunekit.config import ScheduleConfig
from tunekit.errors import unknown_choice

SCHEDULES = ("constant", "step", "cosine", "linear", "inverse_sqrt", "sgdr")


def sgdr_cycle(epoch: float, cycle_epochs: float, cycle_mult: float) -> tuple[int, float, float]:
    """Which SGDR cycle ``epoch`` falls in: (index, epochs into it, its length)."""
    index, start, length = 0, 0.0, cycle_epochs
    while epoch >= start + length:
        start += length
        length *= cycle_mult
        index += 1
    return index, epoch - start, length


def make_lr_factor(
    cfg: ScheduleConfig, steps_per_epoch: int, epochs: int
) -> Callable[[int], float]:
    """The LR multiplier at each global step for schedule ``cfg``.

    1. warm up linearly from ``warmup_factor`` to 1 over ``warmup_epochs``;
    2. then follow the named decay, measured in epochs (fractions allowed);
    3. ``min_lr_ratio`` is the floor of the decaying schedules.
    """
    if cfg.name not in SCHEDULES:
        raise unknown_choice("schedule", cfg.name, SCHEDULES, field="schedule.name")
    total = float(epochs)
    warmup = cfg.warmup_epochs
    floor = cfg.min_lr_ratio

    def decay(e: float) -> float:
        if cfg.name == "constant":
            return 1.0
        if cfg.name == "step":
            return cfg.gamma ** sum(1 for m in cfg.milestones if e >= m)
        if cfg.name == "cosine":
            t = min(1.0, max(0.0, (e - warmup) / max(total - warmup, 1e-8)))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
        if cfg.name == "linear":
            t = min(1.0, max(0.0, (e - warmup) / max(total - warmup, 1e-8)))
            return floor + (1 - floor) * (1 - t)
        if cfg.name == "inverse_sqrt":
            # 1 at the end of warmup (or after one epoch without warmup), then 1/sqrt(e).
            ref = max(warmup, 1.0)
            return math.sqrt(ref / max(e, ref))
        # sgdr: a cosine from 1 to the floor in every cycle, restarting at each.
        _, into, length = sgdr_cycle(e, cfg.cycle_epochs, cfg.cycle_mult)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * into / length))

    def lr_factor(step: int) -> float:
        e = step / steps_per_epoch
        factor = decay(e)
        if warmup > 0 and e < warmup:
            alpha = e / warmup
            factor *= cfg.warmup_factor * (1 - alpha) + alpha
        return factor

    return lr_factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, steps_per_epoch: int, epochs: int
) -> LambdaLR:
    """A per-iteration LambdaLR for ``cfg`` (a plain function, so nothing odd is pickled)."""
    return LambdaLR(optimizer, make_lr_factor(cfg, steps_per_epoch, epochs))
