"""Stochastic weight averaging (Izmailov et al.) with torch.optim.swa_utils.

From ``start_epoch`` on, ``SWALR`` anneals the LR to the SWA LR and holds it
there, and ``AveragedModel`` takes an equal average of the weights at the end
of every epoch. BN statistics of the average are recomputed before each
evaluation.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel

from tunekit.config import SwaConfig
from tunekit.engine import HookBase

from ._bn import recalibrate_on_training_data


class SwaHook(HookBase):
    """Equal averaging of the weights from ``start_epoch`` on, with its own LR.

    The trainer steps the recipe's schedule every iteration; in the SWA phase
    this hook runs right after it and puts ``SWALR``'s LR back in place, so the
    two never fight. Metrics: ``swa/val/...`` in the metrics store.
    """

    priority = 55  # before EMA and the writers; after_step must follow the trainer's scheduler step

    def __init__(
        self,
        start_epoch: int,
        lr: float,
        *,
        anneal_epochs: float = 1.0,
        anneal_strategy: str = "cos",
        recalibrate_batches: int | None = None,
    ) -> None:
        self.start_epoch, self.swa_lr = start_epoch, lr
        self.anneal_epochs, self.anneal_strategy = anneal_epochs, anneal_strategy
        self.recalibrate_batches = recalibrate_batches
        self.averaged: AveragedModel | None = None
        self._swalr: SWALR | None = None
        self._sched_state: dict[str, Any] | None = None

    @classmethod
    def from_config(cls, cfg: SwaConfig) -> SwaHook:
        return cls(
            cfg.start_epoch,
            cfg.lr,
            anneal_epochs=cfg.anneal_epochs,
            anneal_strategy=cfg.anneal_strategy,
            recalibrate_batches=cfg.recalibrate_batches,
        )

    def setup_model(self, model: nn.Module) -> None:
        # AveragedModel deep-copies the model; it must see it before the DDP wrap.
        self.averaged = AveragedModel(model)
        self.averaged.requires_grad_(False)

    def before_train(self) -> None:
        if self.averaged is None:
            self.setup_model(self.trainer.module)

    @property
    def active(self) -> bool:
        return self.trainer.epoch >= self.start_epoch

    def before_epoch(self) -> None:
        if not self.active or self._swalr is not None:
            return
        t = self.trainer
        anneal_steps = round(self.anneal_epochs * t.steps_per_epoch)
        # Parameter groups keep their LR multipliers (optim.param_groups, layer_decay).
        swa_lrs = [self.swa_lr * g.get("lr_mult", 1.0) for g in t.optimizer.param_groups]
        self._swalr = SWALR(
            t.optimizer,
            swa_lr=swa_lrs,  # type: ignore[arg-type]  # torch takes one per group
            anneal_epochs=anneal_steps,
            anneal_strategy=self.anneal_strategy,  # type: ignore[arg-type]
        )
        if self._sched_state is not None:  # resumed inside the SWA phase
            self._swalr.load_state_dict(self._sched_state)
            for group, lr in zip(t.optimizer.param_groups, self._swalr.get_last_lr()):
                group["lr"] = lr

    def after_step(self) -> None:
        if self._swalr is None:
            return
        # Undo the recipe schedule's step: SWALR reads the LR it set last.
        for group, lr in zip(self.trainer.optimizer.param_groups, self._swalr.get_last_lr()):
            group["lr"] = lr
        self._swalr.step()

    def after_epoch(self) -> None:
        t = self.trainer
        if (
            self.averaged is None or t.epoch <= self.start_epoch
        ):  # averaged after epochs start+1, start+2, ...
            return
        self.averaged.update_parameters(t.module)
        if self.metrics.evaluated:
            recalibrate_on_training_data(self.averaged.module, t, self.recalibrate_batches)
            self.metrics.put_eval(t.evaluate(self.averaged.module), model="swa")
            self.metrics.put_epoch("swa/n_averaged", float(self.averaged.n_averaged))

    def state_dict(self) -> dict[str, Any]:
        if self.averaged is None:
            return {}
        state: dict[str, Any] = {"model": self.averaged.state_dict()}
        if self._swalr is not None:
            # SWALR's state holds its annealing function, which weights_only loading
            # refuses; the function comes from the settings, the rest is plain values.
            sched = self._swalr.state_dict()
            state["scheduler"] = {k: v for k, v in sched.items() if not callable(v)}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if self.averaged is None:
            self.setup_model(self.trainer.module)
        assert self.averaged is not None
        self.averaged.load_state_dict(state["model"])
        self._sched_state = state.get("scheduler")
        self._swalr = None
