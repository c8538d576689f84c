"""Optimizers from the recipe: parameter groups, LR multipliers, the linear scaling rule.

Each parameter group carries ``lr_mult``, its LR as a multiple of the base LR:
the group's initial LR is ``base * lr_mult`` and the schedule (a LambdaLR)
multiplies every group's initial LR by the same factor at each step, so the
ratios between groups hold at every step, warmup included.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tunekit.config import OptimConfig
from tunekit.core import NORMS
from tunekit.errors import ConfigError, did_you_mean

OptimizerBuilder = Callable[[list[dict[str, Any]], float, dict[str, Any]], torch.optim.Optimizer]

#: torch.optim's optimizers by recipe name; each takes (groups, lr, the config's own settings).
#: Weight decay is per group: decoupled for AdamW, an L2 term in the gradient for the others.
OPTIMIZERS: dict[str, OptimizerBuilder] = {
    "sgd": lambda groups, lr, kw: torch.optim.SGD(groups, lr=lr, **kw),
    "adamw": lambda groups, lr, kw: torch.optim.AdamW(groups, lr=lr, **kw),
    "adam": lambda groups, lr, kw: torch.optim.Adam(groups, lr=lr, **kw),
    "rmsprop": lambda groups, lr, kw: torch.optim.RMSprop(groups, lr=lr, **kw),
    "adagrad": lambda groups, lr, kw: torch.optim.Adagrad(groups, lr=lr, **kw),
}


def param_groups(
    model: nn.Module,
    weight_decay: float,
    decay_norm_and_bias: bool,
    lr_mults: Mapping[str, float] | None = None,
) -> list[dict]:
    """Trainable parameters split into decayed and not-decayed groups, per LR multiplier.

    Norm weights and all biases are left undecayed unless asked: decaying them
    only shrinks a scale that the next layer undoes. ``lr_mults`` maps a
    parameter's name to its LR multiplier (1 when absent); each group records
    its multiplier as ``lr_mult``. Frozen parameters (``requires_grad=False``)
    never enter a group.
    """
    lr_mults = lr_mults or {}
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            exempt = isinstance(module, NORMS) or name == "bias" or p.ndim <= 1
            decayed = decay_norm_and_bias or not exempt
            full = f"{module_name}.{name}" if module_name else name
            groups.setdefault((lr_mults.get(full, 1.0), decayed), []).append(p)
    # Multiplier 1 first, decayed before not: with no multipliers, the two groups as before.
    order = sorted(groups, key=lambda key: (key[0] != 1.0, not key[1]))
    return [
        {
            "params": groups[key],
            "weight_decay": weight_decay if key[1] else 0.0,
            "group": ("decay" if key[1] else "no_decay")
            + (f" x{key[0]:.6g}" if key[0] != 1.0 else ""),
            "lr_mult": key[0],
        }
        for key in order
    ]


def lr_multipliers(
    model: nn.Module, cfg: OptimConfig, stages: Mapping[str, Sequence[str]] | None = None
) -> dict[str, float]:
    """Each parameter's LR multiplier from ``cfg.param_groups`` and ``cfg.layer_decay``.

    1. ``param_groups`` maps module-name prefixes to multipliers; a prefix
       matches whole name parts (``layer1`` matches ``layer1.0.conv1.weight``,
       not ``layer10.weight``) and the longest matching prefix wins;
    2. ``layer_decay`` multiplies the stages (``stages``: stage -> module paths,
       from the input on) by decay^1 for the last, decay^2 for the one before,
       ...; the head and anything outside the stages keep 1;
    3. both together multiply.

    Parameters at multiplier 1 are left out. A prefix that matches no
    parameter, or ``layer_decay`` on a model with no known stages, is a ConfigError.
    """
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    mults: dict[str, float] = {}
    for prefix in cfg.param_groups:
        if not any(_under(n, prefix) for n in names):
            raise _no_match(model, prefix)
    for n in names:
        matches = [p for p in cfg.param_groups if _under(n, prefix=p)]
        if matches:
            mults[n] = cfg.param_groups[max(matches, key=len)]
    if cfg.layer_decay is not None and cfg.layer_decay != 1.0:
        if not stages:
            raise ConfigError(
                "this model has no named stages to decay the LR over (stages are known for "
                "small_cnn, the torchvision classifiers and builder models that declare "
                "stage_paths); give LR multipliers by module name in optim.param_groups instead",
                field="optim.layer_decay",
            )
        ordered = list(stages.values())
        for depth, paths in enumerate(reversed(ordered), start=1):
            factor = cfg.layer_decay**depth
            for n in names:
                if any(_under(n, p) for p in paths):
                    mults[n] = mults.get(n, 1.0) * factor
    return {n: m for n, m in mults.items() if m != 1.0}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _no_match(model: nn.Module, prefix: str) -> ConfigError:
    modules = [n for n, _ in model.named_modules() if n]
    top = [n for n, _ in model.named_children()]
    return ConfigError(
        f"prefix {prefix!r} matches no parameter of the model{did_you_mean(prefix, modules)}; "
        f"its top-level modules are {', '.join(top) or 'none'}",
        field=f"optim.param_groups.{prefix}",
    )


def effective_lr(cfg: OptimConfig, batch_size: int) -> float:
    """The peak LR, after the linear scaling rule when ``lr_per_256`` is set.

    ``batch_size`` is the effective batch: the images behind one optimizer step
    (``train.batch_size * train.accumulate_steps``).
    """
    return cfg.lr * batch_size / 256 if cfg.lr_per_256 else cfg.lr


def build_optimizer(
    model: nn.Module,
    cfg: OptimConfig,
    batch_size: int,
    *,
    stages: Mapping[str, Sequence[str]] | None = None,
) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``model``'s trainable parameters.

    Args:
        model: the network (not its DDP wrapper: parameter names are matched against prefixes).
        cfg: the recipe's ``optim`` section.
        batch_size: the effective batch, which ``lr_per_256`` scales the LR by.
        stages: stage name -> module paths from the input on, for ``cfg.layer_decay``.

    Example:
        >>> opt = build_optimizer(model, OptimConfig(name="adam", lr=1e-3), 64)  # doctest: +SKIP
    """
    mults = lr_multipliers(model, cfg, stages)
    groups = param_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias, mults)
    if not groups:
        raise ConfigError(
            "the model has no trainable parameters (everything is frozen)", field="model.freeze_to"
        )
    lr = effective_lr(cfg, batch_size)
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
    return OPTIMIZERS[cfg.name](groups, lr, cfg.settings())


def base_lr(optimizer: torch.optim.Optimizer) -> float:
    """The LR at multiplier 1 (what the schedule sets), whatever the groups' multipliers."""
    group = optimizer.param_groups[0]
    return float(group["lr"]) / float(group.get("lr_mult", 1.0))
