"""What every package reads off a loader batch without knowing the task."""

from __future__ import annotations

from typing import Any

import torch


def batch_size(batch: Any) -> int:
    """Samples in a loader batch: a tensor, or a tuple whose first item is a tensor or a list
    (0 when it is neither)."""
    first = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
    if isinstance(first, torch.Tensor):
        return int(first.shape[0]) if first.dim() else 1
    if isinstance(first, (list, tuple)):
        return len(first)
    return 0
