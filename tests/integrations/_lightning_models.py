"""A LightningModule for the callback's tests (imported by the DDP script too)."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from tunekit.testing import loader, random_classification


class Net(pl.LightningModule):
    """fc1 -> ReLU -> mid -> ReLU -> fc2; ``mid``'s output is NaN from training forward ``nan_at`` on."""

    def __init__(self, nan_at: int | None = None) -> None:
        super().__init__()
        self.fc1, self.mid, self.fc2 = nn.Linear(64, 16), nn.Linear(16, 16), nn.Linear(16, 4)
        self.act = nn.ReLU()
        self.nan_at, self.calls = nan_at, 0
        self.mid.register_forward_hook(self._poison)

    def _poison(self, _m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            self.calls += 1
        if self.nan_at is not None and self.calls >= self.nan_at:
            return out * math.nan
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.mid(self.act(self.fc1(x.flatten(1))))))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val/loss", F.cross_entropy(logits, y), sync_dist=True)
        self.log("val_top1", (logits.argmax(1) == y).float().mean(), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def loaders() -> tuple[Any, Any]:
    return (
        loader(random_classification(n=128, seed=0), batch_size=16),
        loader(random_classification(n=32, seed=1), batch_size=16),
    )


def trainer(out: str, devices: int = 1, strategy: str = "auto", **options: Any) -> pl.Trainer:
    from tunekit.integrations.lightning import TunekitCallback

    return pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[TunekitCallback(out, interval=2, activation_interval=3, **options)],
    )
