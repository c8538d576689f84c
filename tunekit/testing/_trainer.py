"""A Trainer over a tiny model and dataset, for testing hooks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from tunekit.engine import HookBase, Trainer
from tunekit.tasks import ClassificationTask

from ._data import loader, random_classification
from ._models import TinyMLP


def tiny_trainer(
    hooks: Sequence[HookBase],
    *,
    model: torch.nn.Module | None = None,
    optimizer: Callable[[torch.nn.Module], torch.optim.Optimizer] | None = None,
    epochs: int = 1,
    n: int = 64,
    batch_size: int = 16,
    task: object | None = None,
) -> Trainer:
    """A Trainer over a learnable random 4-class dataset (``n // batch_size`` steps an epoch).

    Example:
        >>> tiny_trainer([MyHook()]).train()  # doctest: +SKIP
    """
    torch.manual_seed(0)
    model = model or TinyMLP()
    opt = (
        optimizer(model) if optimizer else torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    )
    return Trainer(
        model,
        opt,
        loader(random_classification(n=n), batch_size=batch_size),
        task or ClassificationTask(4),  # type: ignore[arg-type]
        epochs=epochs,
        hooks=hooks,
    )
