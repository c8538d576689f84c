"""What a dataset builder returns, and the registry of named datasets."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset

from tunekit.errors import ConfigError


@dataclass
class DataBundle:
    """Training and validation sets plus what the model and task need to know."""

    train: Dataset[Any]
    val: Dataset[Any]
    num_classes: int
    in_channels: int = 3
    collate_fn: Callable[[list[Any]], Any] | None = None
    class_names: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def import_builder(spec: str, *, field_name: str, file: str | None = None) -> Callable[..., Any]:
    """Resolves ``"package.module:function"`` to the callable, or a one-line error."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"builder {spec!r} must look like 'package.module:function'",
            file=file,
            field=field_name,
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import module {module_name!r} for builder {spec!r} ({exc}); "
            "is it installed or on PYTHONPATH?",
            file=file,
            field=field_name,
        ) from None
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)  # type: ignore[assignment]
        if fn is None:
            raise ConfigError(
                f"module {module_name!r} has no attribute {attr!r} (builder {spec!r})",
                file=file,
                field=field_name,
            )
    if not callable(fn):
        raise ConfigError(f"builder {spec!r} is not callable", file=file, field=field_name)
    return fn


def check_call(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    field: str,
    file: str | None,
) -> None:
    """Raises a one-line error when ``fn(*args, **kwargs)`` would not bind (an unknown key in
    a recipe's ``kwargs``, a missing argument), before the call, naming what ``fn`` accepts."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin without a signature: the call itself will say
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        accepted = [
            p.name
            for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        name = getattr(fn, "__qualname__", repr(fn))
        raise ConfigError(
            f"{name} does not accept these arguments ({exc}); it takes: {', '.join(accepted)}",
            file=file,
            field=field,
        ) from None
