"""YAML loading, dotted overrides and one-line validation errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from tunekit.errors import ConfigError, did_you_mean

from ._recipe import Recipe

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads a YAML mapping, turning every failure into a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no such file (looked at {path.resolve()})", file=str(path))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"malformed YAML at {where}{problem}", file=str(path)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level must be a mapping of fields, got {type(data).__name__}", file=str(path)
        )
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parses ``"optim.lr=0.01"`` into ``(["optim", "lr"], 0.01)``; the value is YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} must look like 'section.field=value'", field="--set")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Returns a copy of ``data`` with each ``a.b=value`` override applied."""
    import copy

    out = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override {text!r}: '{part}' is a value, not a section", field=".".join(path)
                )
            node = child
        node[path[-1]] = value
    return out


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The valid field names at ``loc`` (for "did you mean")."""
    cls: Any = model
    for part in loc[:-1]:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        # Optional[Section] -> Section
        for arg in getattr(ann, "__args__", ()) or ():
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                ann = arg
        cls = ann
    return list(getattr(cls, "model_fields", {}))


def format_validation_error(
    exc: ValidationError, model: type[BaseModel], *, file: str | None, data: Any
) -> ConfigError:
    """The first validation problem, as one line naming file, field, value and rule."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    field = ".".join(str(p) for p in loc) or "<top>"
    value = err.get("input")
    if err["type"] == "extra_forbidden":
        names = _field_names(model, loc)
        hint = did_you_mean(str(loc[-1]), names)
        allowed = f"; allowed here: {', '.join(names)}" if names else ""
        return ConfigError(f"unknown key{hint}{allowed}", file=file, field=field)
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    shown = "a mapping" if isinstance(value, dict) else repr(value)
    return ConfigError(f"value {shown} is not allowed: {msg.lower()}", file=file, field=field)


def validate(model: type[M], data: dict[str, Any], *, file: str | None = None) -> M:
    """Validates ``data`` into ``model`` or raises a one-line ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(exc, model, file=file, data=data) from None


def load_recipe(path: str | os.PathLike[str], overrides: list[str] | None = None) -> Recipe:
    """Loads a recipe YAML, applies ``--set`` overrides, and validates it.

    Example:
        >>> recipe = load_recipe("recipes/digits.yaml", ["optim.lr=0.05"])  # doctest: +SKIP
    """
    data = apply_overrides(read_yaml(path), overrides or [])
    recipe = validate(Recipe, data, file=str(path))
    return recipe


def recipe_to_yaml(recipe: Recipe) -> str:
    """The resolved recipe, as written next to a run's outputs."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
