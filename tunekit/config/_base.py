"""The base of every recipe and study section: strict about keys, booleans and non-finite numbers."""

from __future__ import annotations

import math
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


class FieldError(ValueError):
    """A validator's error about one field below the place pydantic reports it.

    A model-level check raises ``FieldError("data.image_size", "...")`` so that
    the one-line error names ``data.image_size``, not the whole recipe.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class Section(BaseModel):
    """Unknown keys are errors (with a "did you mean"), never silently ignored.

    Numbers must be finite (``.inf``, ``.nan`` and ``1e400``, which overflows
    to infinity, are refused wherever they appear, in lists and in free-form
    ``kwargs`` too), and a number field refuses ``true``/``false`` instead of
    reading them as 1 and 0.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_values(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is None:
            return value
        bad = _non_finite(value)
        if bad is not None:
            path, number = bad
            raise FieldError(path, f"expected a finite number, got {number}")
        if isinstance(value, str) and "\x00" in value:
            # a path with one cannot be opened, and os functions raise on it
            raise ValueError(f"{value!r} holds a NUL character (\\0); remove it")
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool) and _is_number(annotation):
            raise ValueError(f"expected a number, got {str(value).lower()}{_BOOL_HINT}")
        if isinstance(value, (list, tuple)) and _holds_numbers(annotation):
            for i, item in enumerate(value):
                if isinstance(item, bool):
                    raise FieldError(
                        str(i), f"expected a number, got {str(item).lower()}{_BOOL_HINT}"
                    )
        return value


_BOOL_HINT = " (YAML reads true/false, yes/no and on/off as booleans)"


def metric_key(name: str) -> str:
    """A metric as the epoch record names it: a side model's is ``<model>/val/<metric>``
    (``ema/val/top1``); the older spelling ``val_ema/top1`` is read as the same key."""
    side, sep, sub = name.partition("/")
    return f"{side[4:]}/val/{sub}" if sep and side.startswith("val_") and side[4:] else name


def _non_finite(value: Any, depth: int = 0) -> tuple[str, float] | None:
    """The first inf or nan inside ``value`` (lists, tuples, mappings) and its dotted path."""
    if isinstance(value, float):
        return None if math.isfinite(value) else ("", value)
    if depth > 64:
        return None
    items: Any = ()
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    for key, item in items:
        found = _non_finite(item, depth + 1)
        if found is not None:
            path, number = found
            return (f"{key}.{path}" if path else str(key)), number
    return None


def _strip(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _is_number(annotation: Any) -> bool:
    """``int``, ``float``, a constrained one, or one of them or ``None``."""
    annotation = _strip(annotation)
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(annotation) if a is not type(None)]
        return all(_is_number(a) for a in args)
    return annotation in (int, float)


def _holds_numbers(annotation: Any) -> bool:
    annotation = _strip(annotation)
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return any(_holds_numbers(a) for a in get_args(annotation))
    if origin in (list, tuple):
        return any(_strip(a) in (int, float) for a in get_args(annotation))
    return False
