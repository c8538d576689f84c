"""BN statistics for averaged weights.

Averaged weights need their own BN statistics: the running means of the
training model belong to its own weights, not to their average (Izmailov et
al., SWA). ``torch.optim.swa_utils.update_bn`` recomputes them, but it puts the
whole model in training mode (a detector then asks for targets), it knows no
process group and it draws from the global RNG (so a pass over augmented
batches would change the run it is part of). :func:`recalibrate_bn` is the same
cumulative-average pass with those three things handled.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from itertools import islice
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from tunekit.core import BATCH_NORMS, DistInfo, all_reduce_sum, preserved_rng

if TYPE_CHECKING:
    from tunekit.engine import Trainer


#: What :data:`tunekit.core.BATCH_NORMS` holds, for the type checker.
BatchNorm = nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d | nn.SyncBatchNorm


def batchnorm_layers(model: nn.Module) -> list[BatchNorm]:
    """The BN layers of ``model`` that keep running statistics, outside frozen stages.

    A frozen stage keeps the statistics it was loaded with (a linear probe's backbone):
    recalibrating them on the target data would change what the probe is measured on.
    """
    from tunekit.models import frozen_modules

    frozen = frozen_modules(model)
    return [
        cast(BatchNorm, m)
        for name, m in model.named_modules()
        if isinstance(m, BATCH_NORMS)
        and m.track_running_stats
        and not any(f == "" or name == f or name.startswith(f + ".") for f in frozen)
    ]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, inputs: Iterable[Any], dist: DistInfo | None = None) -> int:
    """Recomputes the running statistics of ``model``'s BN layers over ``inputs``.

    Only the BN layers run in training mode (cumulative average, ``momentum=None``);
    the rest of the model stays in eval mode. Under torch.distributed each rank
    passes its own shard and the statistics are averaged over ranks. Returns
    the number of batches seen; with none, the statistics are left as they were.
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    was_training = model.training
    saved = [[b.clone() for b in _stats(m)] for m in layers]
    momenta = [m.momentum for m in layers]
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    n = 0
    try:
        for x in inputs:
            model(x)
            n += 1
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.train(was_training)
    if n == 0:
        for m, old in zip(layers, saved):
            for buf, value in zip(_stats(m), old):
                buf.copy_(value)
        return 0
    if dist is not None and dist.distributed:
        # Every rank saw the same number of equal batches (drop_last), so the
        # mean of the per-rank statistics is the statistic of the union.
        for m in layers:
            for buf in _stats(m)[:2]:  # mean and variance
                all_reduce_sum(buf)
                buf.div_(dist.world_size)
    return n


def _stats(m: nn.Module) -> list[torch.Tensor]:
    """Running mean, running variance, batches seen: BN's buffers in the order it registers them."""
    return list(m.buffers(recurse=False))


def bare_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` without the forward/backward hooks others registered on it.

    Monitors hook the trained model's layers; on a copy (an average, a snapshot)
    they would record its activations as the model's.
    """
    clone = copy.deepcopy(model)
    for m in clone.modules():
        for hooks in (
            m._forward_hooks,
            m._forward_pre_hooks,
            m._backward_hooks,
            m._backward_pre_hooks,
        ):
            hooks.clear()
    return clone


def model_input(batch: Any) -> Any:
    """The model's input in a task's batch: ``(x, y)`` and ``(images, targets)`` alike."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def recalibrate_on_training_data(
    model: nn.Module, trainer: Trainer, max_batches: int | None
) -> int:
    """:func:`recalibrate_bn` over the trainer's training batches, leaving the run untouched."""
    if not batchnorm_layers(model):
        return 0
    t = trainer
    with preserved_rng(t.train_loader):
        batches = (model_input(t.task.to_device(b, t.device)) for b in t.train_loader)
        limit = min(max_batches or t.batches_per_epoch, t.batches_per_epoch)
        return recalibrate_bn(model, islice(batches, limit), t.dist)
