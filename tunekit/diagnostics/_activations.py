"""Activation statistics of chosen layers, sampled through forward hooks at an interval."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from tunekit.errors import unknown_choice

from ._base import DiagnosticHook, never_fails

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardsigmoid,
)


def auto_layers(model: nn.Module, limit: int = 16) -> list[str]:
    """The activation modules of ``model``, or (when it has none, using ``F.relu``
    and the like) its conv and linear layers but the last; at most ``limit``,
    spread evenly from the first to the last."""
    names = [n for n, m in model.named_modules() if n and isinstance(m, ACTIVATIONS)]
    if not names:
        names = [
            n
            for n, m in model.named_modules()
            if n and isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
        ]
        names = names[:-1]  # the head's output is the logits, not an activation
    if len(names) > limit:
        picks = sorted({round(i * (len(names) - 1) / (limit - 1)) for i in range(limit)})
        names = [names[i] for i in picks]
    return names


def _saturation(module: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """Fraction of values in the flat tails of a bounded activation; None for unbounded ones."""
    if isinstance(module, (nn.Sigmoid, nn.Hardsigmoid)):
        return ((x < 0.01) | (x > 0.99)).float().mean()
    if isinstance(module, nn.Tanh):
        return (x.abs() > 0.99).float().mean()
    if isinstance(module, (nn.Hardtanh, nn.ReLU6)):
        low, high = (0.0, 6.0) if isinstance(module, nn.ReLU6) else (module.min_val, module.max_val)
        return ((x <= low) | (x >= high)).float().mean()
    return None


def activation_stats(module: nn.Module, out: torch.Tensor) -> torch.Tensor:
    """``[mean, std, dead, saturated]`` of one output, on its device (saturated is NaN when not defined).

    A unit is a channel for (N, C, ...) outputs of 2 or 4+ dimensions and the
    last dimension for (N, L, F) sequences; it is dead when it is not positive
    for any sample in the batch (for a ReLU, it passes no gradient at all).
    """
    x = out.detach().float()
    if x.dim() >= 4:
        alive = (x > 0).transpose(0, 1).reshape(x.shape[1], -1).any(dim=1)
    elif x.dim() == 3:
        alive = (x > 0).reshape(-1, x.shape[-1]).any(dim=0)
    elif x.dim() == 2:
        alive = (x > 0).any(dim=0)
    else:
        alive = (x > 0).reshape(-1)
    sat = _saturation(module, x)
    nan = torch.full((), float("nan"), device=x.device)
    return torch.stack(
        [
            x.mean(),
            x.std() if x.numel() > 1 else nan,
            1.0 - alive.float().mean(),
            sat if sat is not None else nan,
        ]
    )


class ActivationMonitor(DiagnosticHook):
    """Mean, std, dead-unit fraction and saturation of chosen layers' outputs.

    Forward hooks are registered only for a sampled step (every
    ``interval`` steps) and removed right after its forward, so the other
    steps pay nothing. A module called several times in one forward (a
    ResNet block's shared ReLU) gets the average over its calls.

    Records: ``act/<layer>/mean``, ``.../std``, ``.../dead``, ``.../saturated``
    (the last only for bounded activations: sigmoid, tanh, hardtanh, ReLU6).

    Args:
        layers: module names, or ``"auto"`` (see :func:`auto_layers`).
        interval: steps between samples.
    """

    priority = 30

    def __init__(self, layers: Sequence[str] | str = "auto", interval: int = 100) -> None:
        self.layers = layers
        self.interval = interval
        #: the last sample: layer -> {"mean", "std", "dead", "saturated"}
        self.last: dict[str, dict[str, float]] = {}
        self._modules: dict[str, nn.Module] = {}
        self._handles: list[RemovableHandle] = []
        self._stats: dict[str, list[torch.Tensor]] = {}

    def before_train(self) -> None:
        # Not guarded: an unknown layer name is the user's mistake and is
        # reported before any training happens.
        t = self.trainer
        model = t.module
        modules = dict(model.named_modules())
        names = auto_layers(model) if self.layers == "auto" else list(self.layers)
        for name in names:
            if name not in modules or not name:
                raise unknown_choice(
                    "layer", name, [n for n in modules if n], field="diagnostics.activations"
                )
        self._modules = {n: modules[n] for n in names}

    @never_fails
    def before_step(self) -> None:
        t = self.trainer
        if not t.dist.is_main or (t.step + 1) % self.interval != 0:
            return
        self._stats = {n: [] for n in self._modules}
        for name, module in self._modules.items():
            self._handles.append(module.register_forward_hook(self._make_hook(name)))

    def _make_hook(self, name: str) -> Any:
        def hook(module: nn.Module, _inp: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor) and out.is_floating_point() and out.numel():
                with torch.no_grad():
                    self._stats[name].append(activation_stats(module, out))

        return hook

    def _remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    @never_fails
    def after_backward(self) -> None:
        self._remove()  # the forward is over

    @never_fails
    def after_step(self) -> None:
        self._remove()
        stats, self._stats = self._stats, {}
        names = [n for n, s in stats.items() if s]
        if not names:
            return
        with torch.no_grad():
            table = torch.stack([torch.stack(stats[n]).mean(dim=0) for n in names]).tolist()
        self.last = {}
        scalars: dict[str, float] = {}
        for name, (mean, std, dead, sat) in zip(names, table):
            values = {"mean": mean, "std": std, "dead": dead, "saturated": sat}
            values = {k: v for k, v in values.items() if v == v}  # NaN: not defined for this layer
            self.last[name] = values
            scalars.update({f"act/{name}/{k}": v for k, v in values.items()})
        self.metrics.put_scalars(scalars)

    def after_train(self) -> None:
        self._remove()
