"""The error a guard raises when a step produced a non-finite loss or gradient."""

from __future__ import annotations

import math


class NonFiniteError(FloatingPointError):
    """A training step produced a non-finite loss or gradient; the step was not taken.

    Not a :class:`~tunekit.errors.TunekitError`: it is not a mistake in the
    user's input but a property of the run (the search catches it to fail or
    prune a trial). ``tunekit train`` prints it as one line and exits with 3.

    Attributes:
        step: the optimizer step that was stopped (1-based: the first step is 1).
        epoch: the epoch it belongs to (1-based).
        where: ``"loss"`` or ``"gradient"``.
        loss_terms: each loss term's value at that step (NaN/inf included).
        layer: the first layer found non-finite (module name), or None.
        parameter: the parameter whose gradient was non-finite first, when ``where == "gradient"``.
        detail: how ``layer`` was found.
        taken: the step was taken before its loss was known (``tunekit.watch``: the loop's
            loss reaches the monitor after ``optimizer.step()``).
    """

    def __init__(
        self,
        *,
        step: int,
        epoch: int,
        where: str,
        loss_terms: dict[str, float],
        layer: str | None = None,
        parameter: str | None = None,
        detail: str = "",
        taken: bool = False,
    ) -> None:
        self.step = step
        self.epoch = epoch
        self.where = where
        self.loss_terms = dict(loss_terms)
        self.layer = layer
        self.parameter = parameter
        self.detail = detail
        self.taken = taken
        super().__init__(self.format())

    def format(self) -> str:
        terms = ", ".join(f"{k}={_fmt(v)}" for k, v in self.loss_terms.items())
        where = f"first non-finite layer: {self.layer!r}" if self.layer else "no single layer found"
        if self.detail:
            where += f" ({self.detail})"
        taken = "was taken" if getattr(self, "taken", False) else "was not taken"
        return (
            f"non-finite {self.where} at step {self.step} (epoch {self.epoch}); the step {taken}; "
            f"loss terms: {terms}; {where}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructor: pickling (torch.multiprocessing, Optuna workers) needs this.
        return (_rebuild, (self.__dict__.copy(),))


def _rebuild(state: dict[str, object]) -> NonFiniteError:
    err = NonFiniteError.__new__(NonFiniteError)
    err.__dict__.update(state)
    FloatingPointError.__init__(err, err.format())
    return err


def _fmt(v: float) -> str:
    return str(v) if not math.isfinite(v) else f"{v:.6g}"
