"""What every diagnostic hook shares: it never crashes the run it watches."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from tunekit.engine import HookBase

from ._errors import NonFiniteError

log = logging.getLogger("tunekit.diagnostics")

F = TypeVar("F", bound=Callable[..., Any])


class DiagnosticHook(HookBase):
    """A hook that turns itself off (and says so) instead of failing the run.

    Lifecycle methods decorated with :func:`never_fails` catch any exception
    but :class:`NonFiniteError` (which is the point of a guard), record one
    ``diagnostic_error`` event and disable this hook for the rest of the run.
    """

    disabled: bool = False

    def _disable(self, where: str, exc: BaseException) -> None:
        self.disabled = True
        message = f"{self.name} failed in {where} ({type(exc).__name__}: {exc}); it is off for the rest of this run"
        log.warning(message)
        with contextlib.suppress(Exception):  # the report of a failure must not fail either
            self.metrics.event(
                "diagnostic_error", message, level="warning", echo=False, hook=self.name
            )


def never_fails(method: F) -> F:
    """Decorates a lifecycle method of a :class:`DiagnosticHook`."""

    @functools.wraps(method)
    def wrapper(self: DiagnosticHook, *args: Any, **kwargs: Any) -> Any:
        if self.disabled:
            return None
        try:
            return method(self, *args, **kwargs)
        except NonFiniteError:
            raise
        except Exception as exc:
            self._disable(method.__name__, exc)
            return None

    return wrapper  # type: ignore[return-value]
