"""Pydantic's validation errors, rewritten as one plain line: field, value, rule, fix."""

from __future__ import annotations

import datetime
import re
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from tunekit.errors import ConfigError, did_you_mean

from ._base import FieldError

#: What a value of each pydantic type error should have been.
_EXPECTED = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "dict_type": "a mapping of names to values",
    "model_type": "a section (a mapping of fields)",
    "model_attributes_type": "a section (a mapping of fields)",
    "finite_number": "a finite number",
}

#: Name patterns of the schemas, in words.
_PATTERNS = {
    r"^[A-Za-z0-9_-]+$": "letters, digits, '_' and '-'",
    r"^[A-Za-z0-9_.-]+$": "letters, digits, '_', '.' and '-'",
}


class _Place:
    """Where an error's location leads in the schema: the clean field path and its field."""

    def __init__(self, model: type[BaseModel], loc: tuple[Any, ...]) -> None:
        self.path: list[str] = []
        self.owner: type[BaseModel] | None = model  # the section that holds the last part
        self.info: FieldInfo | None = None
        self.annotation: Any = model
        for part in loc:
            self._step(part)

    def _step(self, part: Any) -> None:
        ann = _strip_optional(self.annotation)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            self.owner = ann
            self.info = ann.model_fields.get(part) if isinstance(part, str) else None
            self.annotation = self.info.annotation if self.info is not None else Any
            self.path.append(str(part))
            return
        origin = get_origin(ann)
        if origin in (Union, types.UnionType) and isinstance(part, str):
            # pydantic names the member of a union that failed; the user wrote no such key
            self.annotation = Any
            return
        self.owner = None
        if origin is list and isinstance(part, int):
            self.annotation = get_args(ann)[0]
        elif origin is tuple and isinstance(part, int):
            args = get_args(ann)
            self.annotation = args[min(part, len(args) - 1)] if args else Any
        elif origin is dict:
            self.annotation = get_args(ann)[1]
        else:
            self.annotation = Any
        self.path.append(str(part))

    @property
    def field(self) -> str | None:
        return ".".join(self.path) or None


def _strip_optional(annotation: Any) -> Any:
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if get_origin(annotation) in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) == 1:
                annotation = args[0]
                continue
        return annotation


def show(value: Any) -> str:
    """A value as the user wrote it, short enough for one line."""
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        text = repr(list(value))
        return text if len(text) <= 40 else f"a list of {len(value)} items"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return f"{value} (a date)"
    if isinstance(value, bytes):
        return "binary data"
    text = repr(value)
    if len(text) <= 60:
        return text
    if isinstance(value, int):
        return f"a {len(text)}-digit number"
    return f"{text[:50]}...' ({len(value) if isinstance(value, str) else len(text)} characters)"


def _got(err: dict[str, Any]) -> str:
    value = err.get("input")
    got = f"got {show(value)}"
    kind = err["type"]
    if kind == "string_type" and isinstance(value, (int, float, bool, datetime.date)):
        return f"{got}; put it in quotes to make it text"
    if kind in ("finite_number", "float_type") and isinstance(value, (str, int)):
        return f"{got}, which is too large for a 64-bit float"
    if (
        kind in ("int_parsing", "float_parsing")
        and isinstance(value, str)
        and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", value.strip())
    ):
        return f"{got}; write the number out in full"
    return got


def _bound(kind: str, ctx: dict[str, Any]) -> str | None:
    words = {
        "greater_than": ("gt", "greater than"),
        "greater_than_equal": ("ge", "at least"),
        "less_than": ("lt", "less than"),
        "less_than_equal": ("le", "at most"),
    }
    if kind not in words:
        return None
    key, word = words[kind]
    return f"must be {word} {ctx[key]}"


def _describe(err: dict[str, Any], place: _Place) -> str:
    """The message for one pydantic error (the field goes in front of it)."""
    kind: str = err["type"]
    ctx: dict[str, Any] = err.get("ctx") or {}
    value = err.get("input")
    if kind == "missing":
        what = place.info.description if place.info is not None else None
        name = place.path[-1] if place.path else "?"
        hint = f": {what}" if what else f"; add '{name}: ...'"
        return f"missing{hint}"
    if kind == "extra_forbidden":
        names = list(place.owner.model_fields) if place.owner is not None else []
        key = place.path[-1] if place.path else ""
        hint = did_you_mean(key, names)
        allowed = f"; allowed here: {', '.join(names)}" if names else ""
        return f"unknown key{hint}{allowed}"
    if kind == "invalid_key":
        hint = " (YAML reads on/off and yes/no as true/false)" if isinstance(value, bool) else ""
        return f"the key {show(value)} is not a name; keys are text, so put it in quotes{hint}"
    if kind == "literal_error":
        choices = [a for a in get_args(_strip_optional(place.annotation)) if isinstance(a, str)]
        hint = did_you_mean(str(value), choices) if isinstance(value, str) else ""
        return (
            f"expected {ctx.get('expected', 'one of the listed values')}, got {show(value)}{hint}"
        )
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, {_got(err)}"
    bound = _bound(kind, ctx)
    if bound is not None:
        return f"value {show(value)} is not allowed: it {bound}"
    if kind in ("too_short", "too_long"):
        limit = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        word = "at least" if kind == "too_short" else "at most"
        count = ctx.get("actual_length")
        unit = "item" if limit == 1 else "items"
        what = place.info.description if place.info is not None and kind == "too_short" else None
        return f"needs {word} {limit} {unit}, got {count}" + (f": {what}" if what else "")
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters, got {len(str(value))}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        allowed = _PATTERNS.get(pattern, f"text matching {pattern}")
        return f"{show(value)} is not allowed: use only {allowed}"
    if kind in ("value_error", "assertion_error"):
        error = ctx.get("error")
        if isinstance(error, FieldError):
            return error.message
        return str(error) if error is not None else err["msg"]
    msg: str = err["msg"]
    return f"{msg[:1].lower()}{msg[1:]}, got {show(value)}"


def _expected_of_union(errors: list[dict[str, Any]]) -> str | None:
    """One "expected A or B" for the errors a union field gives (one per member)."""
    parts: list[str] = []
    for err in errors:
        if err["type"] == "literal_error":
            parts.append(str((err.get("ctx") or {}).get("expected", "")))
        elif err["type"] in _EXPECTED:
            parts.append(_EXPECTED[err["type"]])
        else:
            return None
    return f"expected {', or '.join(dict.fromkeys(parts))}, got {show(errors[0].get('input'))}"


def format_validation_error(
    exc: ValidationError, model: type[BaseModel], *, file: str | None, data: Any = None
) -> ConfigError:
    """The first validation problem, as one line naming the file, field, value and rule.

    Example: ``recipe.yaml: field 'train.epochs': expected a whole number, got 'many'``.
    """
    errors: list[dict[str, Any]] = [dict(e) for e in exc.errors()]
    places = [_Place(model, tuple(e["loc"])) for e in errors]
    first = places[0]
    same = [e for e, p in zip(errors, places) if p.path == first.path]
    err = errors[0]
    message = (_expected_of_union(same) if len(same) > 1 else None) or _describe(err, first)
    field = first.field
    if err["type"] == "invalid_key":
        field = ".".join(first.path[:-1]) or None  # the key itself is what is wrong
    error = (err.get("ctx") or {}).get("error")
    if isinstance(error, FieldError) and error.field:
        field = f"{field}.{error.field}" if field else error.field
    others = len({p.field for p in places}) - 1
    if others:
        message += f" ({others} more problem{'s' if others > 1 else ''} after this one)"
    return ConfigError(message, file=file, field=field)
