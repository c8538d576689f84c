"""The contract every sanity probe shares: verdicts, input checks and the loss adapter.

A probe takes a model, a loader yielding ``(inputs, targets)`` and a loss,
measures something, and returns a result object holding plain numbers plus a
:class:`Verdict`. The :class:`Objective` turns "a model and a batch" into a
scalar loss the same way for every probe: ``loss_fn(model(inputs), targets)``
for a classifier, ``model(inputs, targets)`` (a dict of loss terms) for a
torchvision-style detector, or a task's ``losses(model, batch)`` for a recipe.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from tunekit.errors import TunekitError, first_line

Status = Literal["PASS", "WARN", "FAIL"]
_RANK: dict[str, int] = {"PASS": 0, "WARN": 1, "FAIL": 2}

LossFn = Callable[[Any, Any], torch.Tensor]


class SanityError(TunekitError):
    """A model, loader or loss that a sanity probe cannot run on."""


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check, as a person reads it in a table.

    Attributes:
        check: the check's name ("initial loss", "overfit", ...).
        status: PASS, WARN or FAIL.
        measured: what was measured, formatted for the table.
        expected: what a healthy model gives, formatted for the table.
        reason: why this status, in one sentence.
        fix: what to change when it is not a PASS ("" when it is).
    """

    check: str
    status: Status
    measured: str
    expected: str
    reason: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe of ``statuses`` (PASS when there are none)."""
    return max(statuses, key=_RANK.__getitem__, default="PASS")


def finite_or_none(x: float) -> float | None:
    """``x``, or None when it is NaN or infinite (JSON has no NaN)."""
    return x if math.isfinite(x) else None


class ProbeResult:
    """Base of the probes' result dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready values (non-finite numbers become None)."""
        return plain(self)


def plain(result: Any) -> dict[str, Any]:
    """A result dataclass as JSON-ready values: ``asdict`` with every NaN or infinity as None."""
    out: dict[str, Any] = _finite(asdict(result))
    return out


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_finite(v) for v in value)
    return value


# -- inputs --------------------------------------------------------------


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for an empty model."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


def require_trainable(model: nn.Module, what: str) -> None:
    """Raises a one-line error when nothing in ``model`` can be trained."""
    if not any(p.requires_grad for p in model.parameters()):
        raise SanityError(
            f"{what}: the model has no trainable parameters (all are frozen or there are none); "
            "unfreeze at least the head (requires_grad=True) before running this check"
        )


def move_to(obj: Any, device: torch.device) -> Any:
    """Moves tensors in nested tuples, lists and dicts to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, tuple):
        return tuple(move_to(o, device) for o in obj)
    if isinstance(obj, list):
        return [move_to(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: move_to(v, device) for k, v in obj.items()}
    return obj


def require_steps(num_iter: int, what: str) -> None:
    """Raises a one-line error when runs of ``num_iter`` steps are too short to compare (under 10)."""
    if num_iter < 10:
        raise SanityError(
            f"{what}: num_iter={num_iter} is not allowed; use 10 or more (100 is usual)"
        )


def as_pair(batch: Any, what: str) -> tuple[Any, Any]:
    """Checks that a loader batch is an ``(inputs, targets)`` pair."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    shown = type(batch).__name__
    if isinstance(batch, torch.Tensor):
        shown = f"a tensor of shape {tuple(batch.shape)}"
    elif isinstance(batch, (tuple, list)):
        shown = f"a {type(batch).__name__} of {len(batch)} items"
    raise SanityError(
        f"{what}: the loader must yield (inputs, targets) pairs, got {shown}; "
        "wrap your dataset so that each batch is (inputs, targets)"
    )


def take_batches(loader: Iterable[Any], n: int, what: str) -> list[Any]:
    """The first ``n`` batches of ``loader`` (fewer when it is shorter; none is an error)."""
    batches = list(itertools.islice(iter(loader), n))
    if not batches:
        raise SanityError(f"{what}: the loader yielded no batches; it needs at least one")
    return batches


def cycle(loader: Iterable[Any], what: str) -> Iterator[Any]:
    """Batches from ``loader`` forever, starting a new pass when one ends."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise SanityError(f"{what}: the loader yielded no batches; it needs at least one")


def nbytes(obj: Any) -> int:
    """Bytes held by the tensors in a nested batch."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (tuple, list)):
        return sum(nbytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(nbytes(v) for v in obj.values())
    return 0


def prefetch(loader: Iterable[Any], n: int, what: str, max_bytes: int) -> list[Any] | None:
    """The next ``n`` batches of ``loader`` (cycling) held in memory, or None when they would
    take more than ``max_bytes``.

    Probes that run several short runs from the same state then read the
    same batches without paying for loading and augmentation again.
    """
    it = cycle(loader, what)
    first = next(it)
    if nbytes(first) * n > max_bytes:
        return None
    return [first, *itertools.islice(it, n - 1)]


# -- the loss adapter ----------------------------------------------------


@dataclass
class StepOutput:
    """One forward pass: the scalar loss, its terms, and logits when there are any."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    logits: torch.Tensor | None = None
    targets: Any = None

    def correct(self) -> tuple[int, int] | None:
        """(correct, count) for class-index targets, else None.

        Multi-hot targets (N, C) count a sample as correct when its k tags are
        its k highest scores: an exact match by rank, whichever the loss.
        """
        y, z = self.targets, self.logits
        multi_hot = isinstance(y, torch.Tensor) and y.is_floating_point() and y.ndim == 2
        if multi_hot and isinstance(z, torch.Tensor) and y.shape == z.shape:
            order = z.detach().argsort(dim=1, descending=True)
            rank = torch.empty_like(order).scatter_(
                1, order, torch.arange(z.shape[1], device=z.device).expand_as(order)
            )
            tags = y > 0.5
            exact = ((rank < tags.sum(dim=1, keepdim=True)) == tags).all(dim=1)
            return int(exact.sum()), len(y)
        if not isinstance(y, torch.Tensor) or z is None or z.ndim != 2 or y.ndim != 1:
            return None
        if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8) or len(y) != len(z):
            return None
        return int((z.argmax(dim=1) == y).sum()), len(y)


class Objective:
    """Computes the loss a probe optimises, the same way in every probe.

    Args:
        loss_fn: ``loss_fn(model(inputs), targets) -> scalar``, or None for a
            model that returns its own loss terms from ``model(inputs, targets)``
            (torchvision detectors in train mode).
        losses: a task's ``losses(model, batch) -> dict`` (used by recipes);
            takes the place of both of the above.
        to_device: moves a batch to the model's device (default: every tensor in it).
        grad_clip: clip the gradients' total norm to this before each step, as
            the training run would (``optim.grad_clip`` of a recipe).
        what: the probe's name, for error messages.
    """

    def __init__(
        self,
        loss_fn: LossFn | None = None,
        *,
        losses: Callable[[nn.Module, Any], dict[str, torch.Tensor]] | None = None,
        to_device: Callable[[Any, torch.device], Any] | None = None,
        grad_clip: float | None = None,
        what: str = "sanity",
    ) -> None:
        self.loss_fn = loss_fn
        self.losses = losses
        self.to_device = to_device or move_to
        self.grad_clip = grad_clip
        self.what = what

    @property
    def is_detector(self) -> bool:
        return self.loss_fn is None

    def __call__(self, model: nn.Module, batch: Any, device: torch.device) -> StepOutput:
        if self.losses is not None:
            terms = self.losses(model, self.to_device(batch, device))
            return StepOutput(self._total(terms), terms)
        inputs, targets = as_pair(batch, self.what)
        inputs, targets = self.to_device((inputs, targets), device)
        if self.loss_fn is None:
            out = self._forward(model, inputs, targets)
            if not isinstance(out, dict) or not out:
                raise SanityError(
                    f"{self.what}: without a loss_fn the model must return a dict of loss terms from "
                    f"model(inputs, targets) in train mode (as torchvision detectors do), got "
                    f"{type(out).__name__}; pass loss_fn=... for a classifier"
                )
            return StepOutput(self._total(out), out)
        logits = self._forward(model, inputs)
        try:
            loss = self.loss_fn(logits, targets)
        except (RuntimeError, ValueError, IndexError) as exc:
            shape = (
                tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            )
            tshape = (
                tuple(targets.shape)
                if isinstance(targets, torch.Tensor)
                else type(targets).__name__
            )
            raise SanityError(
                f"{self.what}: the loss cannot compare the model's outputs (shape {shape}) with the "
                f"loader's targets (shape {tshape}): {first_line(exc, 200)}"
            ) from None
        self._check_scalar(loss, "loss_fn")
        return StepOutput(
            loss, {"loss": loss}, logits if isinstance(logits, torch.Tensor) else None, targets
        )

    def step(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """One update from ``loss``: zero the gradients, backward, clip (if asked), step."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.grad is not None], self.grad_clip
            )
        optimizer.step()

    def _forward(self, model: nn.Module, *args: Any) -> Any:
        try:
            return model(*args)
        except (RuntimeError, ValueError, TypeError, AssertionError) as exc:
            first = args[0]
            shown = (
                f"inputs of shape {tuple(first.shape)}"
                if isinstance(first, torch.Tensor)
                else f"inputs of type {type(first).__name__}"
            )
            hint = (
                "; without a loss_fn the model is called as model(inputs, targets) and must return "
                "a dict of losses (a detector): pass loss_fn=... for a classifier"
                if len(args) == 2
                else ""
            )
            raise SanityError(
                f"{self.what}: the model cannot run on the loader's batch ({shown}): "
                f"{first_line(exc, 200)}{hint}"
            ) from None

    def _total(self, terms: dict[str, Any]) -> torch.Tensor:
        for name, value in terms.items():
            self._check_scalar(value, f"loss term {name!r}")
        total = sum(terms.values())
        assert isinstance(total, torch.Tensor)
        return total

    def _check_scalar(self, loss: Any, where: str) -> None:
        if not isinstance(loss, torch.Tensor):
            raise SanityError(f"{self.what}: {where} returned {type(loss).__name__}, not a tensor")
        if loss.numel() != 1:
            raise SanityError(
                f"{self.what}: {where} returned a tensor of shape {tuple(loss.shape)}, not a scalar; "
                "reduce it to one number (reduction='mean')"
            )
        if not loss.is_floating_point():
            raise SanityError(
                f"{self.what}: {where} returned a {loss.dtype} tensor; it must be floating point"
            )
