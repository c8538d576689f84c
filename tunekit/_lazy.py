"""Public APIs whose modules are imported on first use (PEP 562).

``tunekit --help`` and a one-line recipe error must not pay for importing
torch, torchvision, optuna and plotly (seconds of CPU), so a package's
``__init__`` lists its public names once, as imports that only type checkers
and editors run, and hands its own file to :func:`attach`::

    if TYPE_CHECKING:
        from ._ema import EmaHook, ModelEma
    else:
        __getattr__, __dir__, __all__ = attach(__name__, __file__)

The first ``tunekit.averaging.EmaHook`` (or ``from tunekit.averaging import
EmaHook``) imports ``tunekit.averaging._ema`` and keeps the value in the
package, so later look-ups are plain attribute reads. The import block is the
one list: ``__all__``, ``dir()`` and the lazy look-up are read from it, so a
name cannot be public in one and missing from another.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def public_names(init_file: str) -> dict[str, tuple[str, str]]:
    """Public name -> (module, name in it), from the ``if TYPE_CHECKING:`` imports of a file."""
    tree = ast.parse(Path(init_file).read_text(encoding="utf-8"), init_file)
    where: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if not (isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"):
            continue
        for imp in node.body:
            if isinstance(imp, ast.ImportFrom):
                module = "." * imp.level + (imp.module or "")
                where.update({a.asname or a.name: (module, a.name) for a in imp.names})
    return where


def attach(
    package: str, init_file: str, eager: Sequence[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """The module ``__getattr__``, ``__dir__`` and ``__all__`` of ``package``.

    Args:
        package: the package's ``__name__``.
        init_file: its ``__file__``, whose ``if TYPE_CHECKING:`` imports name the public API.
        eager: public names the ``__init__`` defines itself (``__version__``).
    """
    where = public_names(init_file)

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attr = where[name]
        value = getattr(importlib.import_module(module, package), attr)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__, sorted({*where, *eager})
