"""Optimizers from the recipe: parameter groups, the linear scaling rule."""

from __future__ import annotations

import torch
from torch import nn

from tunekit.config import OptimConfig

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool) -> list[dict]:
    """Trainable parameters split into decayed and not-decayed groups.

    Norm weights and all biases are left undecayed unless asked: decaying them
    only shrinks a scale that the next layer undoes.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            exempt = isinstance(module, _NORM_TYPES) or name == "bias" or p.ndim <= 1
            (no_decay if exempt and not decay_norm_and_bias else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "group": "decay"}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "group": "no_decay"})
    return [g for g in groups if g["params"]]


def effective_lr(cfg: OptimConfig, batch_size: int) -> float:
    """The peak LR, after the linear scaling rule when ``lr_per_256`` is set."""
    return cfg.lr * batch_size / 256 if cfg.lr_per_256 else cfg.lr


def build_optimizer(model: nn.Module, cfg: OptimConfig, batch_size: int) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or AdamW over ``model``'s trainable parameters."""
    from tunekit.errors import ConfigError

    groups = param_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias)
    if not groups:
        raise ConfigError(
            "the model has no trainable parameters (everything is frozen)", field="model.freeze_to"
        )
    lr = effective_lr(cfg, batch_size)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return torch.optim.AdamW(groups, lr=lr, betas=cfg.betas)
