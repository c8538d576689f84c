"""Frozen modules: no gradients, no optimizer state, and eval mode whatever ``train()`` says.

A frozen stage of a linear probe must compute the same features for every
batch: its BatchNorm layers normalise with the pretrained running statistics
and never update them, and its dropout and stochastic depth are off. Clearing
``requires_grad`` covers the weights only; the trainer calls ``model.train()``
every epoch (and after every evaluation), which would put the stage's BN
layers back to updating their statistics.

How: a frozen module gets its own ``train`` attribute, an :class:`_EvalOnly`
that always switches it (and everything under it) to eval mode. ``nn.Module.train``
reaches children by calling their ``train``, so this holds for every call on
any ancestor: the trainer's, a probe's restore, DDP's (which calls the wrapped
module's), ``model.train(was_training)`` after an evaluation. It is visible
in the module's state (``module.training`` stays False, :func:`is_frozen` says
so), needs no cooperation from the trainer, and survives ``copy.deepcopy`` and
pickling (the attribute is an instance of a module-level class that refers to
its module, not a bound method). A forward pre-hook would also work, but
``training`` would read True between a ``train()`` call and the next forward;
swapping in frozen layer classes (FrozenBatchNorm2d) would change the state
dict's keys and leave dropout on.
"""

from __future__ import annotations

from torch import nn


class _EvalOnly:
    """Stands in for a frozen module's ``train``: any mode becomes eval."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, mode: bool = True) -> nn.Module:
        return nn.Module.train(self.module, False)


def freeze_module(module: nn.Module) -> None:
    """Freezes ``module``: no gradients for its parameters, and eval mode from now on."""
    for p in module.parameters():
        p.requires_grad_(False)
    module.train = _EvalOnly(module)  # type: ignore[method-assign]
    module.train(False)


def unfreeze_module(module: nn.Module, *, mode: bool = True) -> None:
    """Undoes :func:`freeze_module` (for fine-tuning after a probe) and sets ``mode``."""
    if is_frozen(module):
        del module.train
    for p in module.parameters():
        p.requires_grad_(True)
    module.train(mode)


def is_frozen(module: nn.Module) -> bool:
    """Whether :func:`freeze_module` froze this module itself (not one of its parents)."""
    return isinstance(module.__dict__.get("train"), _EvalOnly)


def frozen_modules(model: nn.Module) -> list[str]:
    """Names of the frozen modules in ``model`` (``""`` is the model itself)."""
    return [name for name, m in model.named_modules() if is_frozen(m)]
