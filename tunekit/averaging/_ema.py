"""Polyak/EMA averaging of the weights, as a small module and as a trainer hook.

``ModelEma`` follows timm's ``ModelEmaV3``: time is explicit (``get_decay(step)``,
``update(model, step)``) and the update is one multi-tensor ``lerp`` over all
weights. ``torch.optim.swa_utils.AveragedModel`` with an EMA function updates
tensor by tensor on the CPU (its fused path is for GPUs only), which costs
about ten times more per step; see ``benchmarks/ema_overhead.py``.
"""

from __future__ import annotations

import weakref
from typing import Any, Literal

import torch
from torch import nn

from tunekit.config import EmaConfig
from tunekit.engine import HookBase

from ._bn import (
    bare_copy,
    batchnorm_layers,
    recalibrate_on_training_data,
)

Buffers = Literal["recalibrate", "copy", "ema"]


class ModelEma(nn.Module):
    """An exponential moving average of a model's weights.

    Args:
        model: the model to follow (unwrapped, not DDP); it is copied.
        decay: the decay once warmed up.
        warmup: grow the decay as ``1 - step**-warmup_power`` up to ``decay``,
            so that early steps are not dominated by the initial weights.
        buffers: ``"ema"`` averages float buffers like the weights; ``"copy"``
            and ``"recalibrate"`` take the model's buffers (the latter expects
            BN statistics to be recomputed before use, see ``recalibrate_bn``).

    Example:
        >>> ema = ModelEma(model, decay=0.999)  # doctest: +SKIP
        >>> for step in range(1, n + 1):  # doctest: +SKIP
        ...     train_step(model)
        ...     ema.update(model, step)
    """

    def __init__(
        self,
        model: nn.Module,
        decay: float = 0.999,
        *,
        warmup: bool = True,
        warmup_power: float = 0.75,
        buffers: Buffers = "ema",
    ) -> None:
        super().__init__()
        self.module = bare_copy(model).eval().requires_grad_(False)
        self.decay, self.warmup, self.warmup_power = decay, warmup, warmup_power
        self.buffer_mode = buffers  # not `buffers`: that is an nn.Module method
        self._source: weakref.ReferenceType[nn.Module] | None = None
        self._lerp: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        self._copy: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])

    def get_decay(self, step: int) -> float:
        """The decay used by the update after optimizer step ``step`` (1 for the first)."""
        if not self.warmup:
            return self.decay
        n = step - 1
        if n <= 0:
            return 0.0  # the first update copies the model
        return min(self.decay, 1.0 - (1.0 + n) ** -self.warmup_power)

    def _pairs(self, model: nn.Module) -> None:
        # Tensors are matched by name once per model; the optimizer updates them in place.
        own: dict[str, torch.Tensor] = dict(self.module.named_parameters())
        own.update(self.module.named_buffers())
        theirs: dict[str, torch.Tensor] = dict(model.named_parameters())
        theirs.update(model.named_buffers())
        if own.keys() != theirs.keys():
            missing = sorted(own.keys() ^ theirs.keys())[:3]
            raise ValueError(f"the model's tensors differ from the EMA copy's (e.g. {missing})")
        params = {n for n, _ in self.module.named_parameters()}
        lerp: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        cp: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        for name, mine in own.items():
            other = theirs[name].detach()
            averaged = name in params or (self.buffer_mode == "ema" and mine.is_floating_point())
            target = lerp if averaged else cp
            target[0].append(mine.detach())
            target[1].append(other)
        self._lerp, self._copy = lerp, cp
        self._source = weakref.ref(model)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> float:
        """Moves the average towards ``model`` after optimizer step ``step``; returns the decay used."""
        if self._source is None or self._source() is not model:
            self._pairs(model)
        decay = self.get_decay(step)
        ema, cur = self._lerp
        if ema:
            # ema += (1 - decay) * (model - ema), all tensors in one call.
            torch._foreach_lerp_(ema, cur, 1.0 - decay)
        if self._copy[0]:
            torch._foreach_copy_(self._copy[0], self._copy[1])
        return decay

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)


class EmaHook(HookBase):
    """Keeps a :class:`ModelEma` of the trained model and evaluates it after each evaluation.

    The copy is made in :meth:`setup_model`, which ``tunekit.run.build_trainer``
    calls before the DDP wrap (every rank then averages the same weights). Its
    metrics go into the metrics store as ``ema/val/...`` (the epoch record and
    ``last_eval``); its state rides in checkpoints, so
    a resumed run continues the same average bit for bit.
    """

    priority = 60  # after the evaluation, before the metrics writer (80) and checkpoints (90)

    def __init__(
        self,
        decay: float = 0.999,
        *,
        warmup: bool = True,
        warmup_power: float = 0.75,
        update_every: int = 1,
        buffers: Buffers = "recalibrate",
        recalibrate_batches: int | None = 50,
        evaluate: bool = True,
    ) -> None:
        self.decay, self.warmup, self.warmup_power = decay, warmup, warmup_power
        self.update_every, self.buffers, self.recalibrate_batches = (
            update_every,
            buffers,
            recalibrate_batches,
        )
        self.evaluate = evaluate
        self.ema: ModelEma | None = None
        self.last_decay = 0.0

    @classmethod
    def from_config(cls, cfg: EmaConfig) -> EmaHook:
        return cls(
            cfg.decay,
            warmup=cfg.warmup,
            warmup_power=cfg.warmup_power,
            update_every=cfg.update_every,
            buffers=cfg.buffers,
            recalibrate_batches=cfg.recalibrate_batches,
        )

    def setup_model(self, model: nn.Module) -> None:
        """Makes the average's copy of ``model`` (before any DDP wrap)."""
        self.ema = ModelEma(
            model,
            self.decay,
            warmup=self.warmup,
            warmup_power=self.warmup_power,
            buffers=self.buffers,
        )

    def before_train(self) -> None:
        if self.ema is None:  # a trainer built by hand, without build_trainer
            self.setup_model(self.trainer.module)

    def after_step(self) -> None:
        t = self.trainer
        if self.ema is not None and t.step % self.update_every == 0:
            self.last_decay = self.ema.update(t.module, t.step)

    def after_epoch(self) -> None:
        t = self.trainer
        if self.ema is None or not self.evaluate or not self.metrics.evaluated:
            return
        self.prepare_for_eval()
        self.metrics.put_eval(t.evaluate(self.ema.module), model="ema")

    def prepare_for_eval(self) -> None:
        """Recomputes the average's BN statistics when asked to (``buffers="recalibrate"``)."""
        assert self.ema is not None
        if self.buffers == "recalibrate" and batchnorm_layers(self.ema.module):
            recalibrate_on_training_data(self.ema.module, self.trainer, self.recalibrate_batches)

    def state_dict(self) -> dict[str, Any]:
        if self.ema is None:
            return {}
        return {"model": self.ema.module.state_dict(), "decay": self.last_decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if self.ema is None:
            self.setup_model(self.trainer.module)
        assert self.ema is not None
        self.ema.module.load_state_dict(state["model"])
        self.last_decay = float(state.get("decay", 0.0))
