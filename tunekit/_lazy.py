"""Public APIs whose modules are imported on first use (PEP 562).

``tunekit --help`` and a one-line recipe error must not pay for importing
torch, torchvision, optuna and plotly (seconds of CPU), so a package's
``__init__`` names where each public name lives instead of importing it::

    _SOURCES = {"._ema": ("EmaHook", "ModelEma")}
    if not TYPE_CHECKING:
        __getattr__, __dir__ = attach(__name__, _SOURCES)

and repeats the imports under ``if TYPE_CHECKING:`` for mypy and editors. The
first ``tunekit.averaging.EmaHook`` (or ``from tunekit.averaging import
EmaHook``) imports ``tunekit.averaging._ema`` and keeps the value in the
package, so later look-ups are plain attribute reads.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def attach(
    package: str, sources: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``.

    Args:
        package: the package's ``__name__``.
        sources: module (relative to ``package``, or absolute) -> the public names it defines.
    """
    where = {name: module for module, names in sources.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__
