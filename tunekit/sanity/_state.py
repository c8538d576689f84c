"""Snapshot and restore, bit for bit, everything a probe changes.

A probe trains the user's own model with the user's own optimizer; afterwards
both must be exactly as they were, and so must every random number generator
(Python, NumPy, torch, CUDA, and the loader's own generator), so that the
training run that follows a sanity check is the run it would have been
without it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from tunekit.core import DROPOUTS, rng_state, set_rng_state

_DROPOUT_TYPES: tuple[type[nn.Module], ...] = (*DROPOUTS, StochasticDepth)


@dataclass
class ProbeState:
    """What :func:`snapshot` captured (tensors are private copies)."""

    tensors: dict[str, torch.Tensor]
    training: dict[str, bool]
    requires_grad: dict[str, bool]
    grads: dict[str, torch.Tensor | None]
    optimizer: dict[str, Any] | None
    rng: dict[str, Any]
    generators: list[torch.Tensor | None]


def _all_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    # Parameters and every buffer, persistent or not: a non-persistent buffer
    # is not in state_dict() but a forward pass may still change it.
    out: dict[str, torch.Tensor] = {
        f"param:{k}": p for k, p in model.named_parameters(remove_duplicate=False)
    }
    out.update({f"buffer:{k}": b for k, b in model.named_buffers(remove_duplicate=False)})
    return out


def _generator(loader: Any) -> torch.Generator | None:
    gen = getattr(loader, "generator", None)
    return gen if isinstance(gen, torch.Generator) else None


def snapshot(
    model: nn.Module, optimizer: torch.optim.Optimizer | None = None, loaders: Iterable[Any] = ()
) -> ProbeState:
    """Copies the model's tensors and flags, the optimizer state and all RNG states."""
    with torch.no_grad():
        tensors = {k: t.detach().clone() for k, t in _all_tensors(model).items()}
    return ProbeState(
        tensors=tensors,
        training={k: m.training for k, m in model.named_modules(remove_duplicate=False)},
        requires_grad={
            k: p.requires_grad for k, p in model.named_parameters(remove_duplicate=False)
        },
        grads={
            k: p.grad.detach().clone() if p.grad is not None else None
            for k, p in model.named_parameters(remove_duplicate=False)
        },
        optimizer=copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None,
        rng=rng_state(),
        generators=[g.get_state() if (g := _generator(ld)) is not None else None for ld in loaders],
    )


def restore(
    state: ProbeState,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    loaders: Iterable[Any] = (),
) -> None:
    """Puts back what :func:`snapshot` captured, in place (parameter objects stay the same)."""
    with torch.no_grad():
        for k, t in _all_tensors(model).items():
            saved = state.tensors[k]
            if t.shape != saved.shape or t.dtype != saved.dtype:
                # A module that re-registers a buffer with a new shape (rare):
                # point the attribute back at the saved tensor.
                t.data = saved.clone()
            else:
                t.copy_(saved)
    for k, m in model.named_modules(remove_duplicate=False):
        m.training = state.training.get(k, m.training)
    for k, p in model.named_parameters(remove_duplicate=False):
        p.requires_grad_(state.requires_grad.get(k, p.requires_grad))
        saved_grad = state.grads.get(k)
        p.grad = saved_grad.clone() if saved_grad is not None else None
    if optimizer is not None and state.optimizer is not None:
        # Deep-copied again: load_state_dict may keep the tensors it is given,
        # and a later step would then write into the snapshot.
        optimizer.load_state_dict(copy.deepcopy(state.optimizer))
    set_rng_state(state.rng)
    for ld, saved_gen in zip(loaders, state.generators):
        gen = _generator(ld)
        if gen is not None and saved_gen is not None:
            gen.set_state(saved_gen)


@contextmanager
def preserved(
    model: nn.Module, optimizer: torch.optim.Optimizer | None = None, loaders: Iterable[Any] = ()
) -> Iterator[ProbeState]:
    """Runs the block, then restores model, optimizer and RNGs, also when the block raised."""
    loaders = list(loaders)
    state = snapshot(model, optimizer, loaders)
    try:
        yield state
    finally:
        restore(state, model, optimizer, loaders)


def dropout_off(model: nn.Module) -> None:
    """Puts dropout and stochastic-depth layers in eval mode (the rest keeps its mode)."""
    for m in model.modules():
        if isinstance(m, _DROPOUT_TYPES):
            m.eval()


def set_hyper(
    optimizer: torch.optim.Optimizer, *, lr: float | None = None, weight_decay: float | None = None
) -> None:
    """Sets the LR and/or weight decay of every parameter group.

    A group with an LR multiplier (``lr_mult``, from optim.param_groups) gets ``lr`` times it.
    """
    for group in optimizer.param_groups:
        if lr is not None:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        if weight_decay is not None and "weight_decay" in group:
            group["weight_decay"] = weight_decay


@contextmanager
def label_smoothing_off(loss_fn: Any) -> Iterator[None]:
    """Sets ``loss_fn.label_smoothing`` to 0 for the block when it has one (nn.CrossEntropyLoss)."""
    old = getattr(loss_fn, "label_smoothing", None)
    if isinstance(old, float) and old > 0:
        loss_fn.label_smoothing = 0.0
        try:
            yield
        finally:
            loss_fn.label_smoothing = old
    else:
        yield
