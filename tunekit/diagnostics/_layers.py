"""Parameters grouped by the layer (module) that owns them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def layer_of(param_name: str) -> str:
    """``"layer1.0.conv1.weight"`` -> ``"layer1.0.conv1"``; a parameter of the root module is its own layer."""
    head, sep, _ = param_name.rpartition(".")
    return head if sep else param_name


@dataclass
class ParamLayout:
    """The trainable parameters of a model, in module order, and the layer of each."""

    names: list[str]
    params: list[torch.Tensor]
    layers: list[str]  # unique, in module order
    layer_index: list[int]  # for each parameter, its position in ``layers``

    @classmethod
    def of(cls, module: nn.Module) -> ParamLayout:
        # Frozen parameters (requires_grad=False) are left out on purpose: they
        # are not meant to move, so a ratio of 0 for them is no news.
        names: list[str] = []
        params: list[torch.Tensor] = []
        layers: list[str] = []
        index: list[int] = []
        seen: dict[str, int] = {}
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            layer = layer_of(name)
            if layer not in seen:
                seen[layer] = len(layers)
                layers.append(layer)
            names.append(name)
            params.append(p)
            index.append(seen[layer])
        return cls(names, params, layers, index)

    def per_layer(self, squares: list[float]) -> list[float]:
        """Sums per-parameter squared norms into per-layer norms."""
        sums = [0.0] * len(self.layers)
        for i, sq in zip(self.layer_index, squares):
            sums[i] += sq
        return [s**0.5 for s in sums]
