"""YAML loading, dotted overrides and one-line validation errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from tunekit.errors import ConfigError

from ._errors import format_validation_error, show
from ._recipe import Recipe
from ._yaml import MAX_DEPTH, MAX_FILE_BYTES, load_value, load_yaml

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | os.PathLike[str], *, example: str | None = None) -> dict[str, Any]:
    """Reads a YAML mapping, turning every failure into a one-line ConfigError.

    The file must be UTF-8 text of at most 1 MiB whose top level is a mapping,
    nested at most 64 levels deep, with at most 100000 values once aliases are
    expanded and no key written twice in one mapping. A file with nothing in
    it (blank lines or comments only) is an error; ``example`` names a file to
    start from. An explicit ``{}`` is read as an empty mapping.
    """
    path = Path(path)
    file = str(path)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError("is a directory, not a YAML file; name the file inside it", file=file)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(
                "is not a regular file (a pipe or a device); name a YAML file", file=file
            )
        if info.st_size > MAX_FILE_BYTES:
            raise ConfigError(
                f"the file is {info.st_size / 2**20:.1f} MiB; at most {MAX_FILE_BYTES // 2**20} MiB "
                "is read (a recipe or study file is a few KiB): is this the right file?",
                file=file,
            )
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"no such file (looked at {path.resolve()})", file=file) from None
    except PermissionError:
        raise ConfigError(
            "cannot read the file: permission denied; check its permissions (chmod u+r)",
            file=file,
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=file) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(
            f"the file is larger than {MAX_FILE_BYTES // 2**20} MiB (a recipe or study file is a "
            "few KiB): is this the right file?",
            file=file,
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not a UTF-8 text file (byte 0x{raw[exc.start]:02x} at position {exc.start} is not "
            "UTF-8): is this the right file? Save YAML as UTF-8",
            file=file,
        ) from None
    data = load_yaml(text, file=file)
    if data is None:
        start = f"; start from a copy of {example}" if example else ""
        raise ConfigError(
            f"the file is empty (no fields, only blank lines or comments){start}", file=file
        )
    if not isinstance(data, dict):
        got = "a list" if isinstance(data, list) else f"the single value {show(data)}"
        raise ConfigError(
            f"the top level must be a mapping of fields ('name: value' lines), got {got}",
            file=file,
        )
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parses ``"optim.lr=0.01"`` into ``(["optim", "lr"], 0.01)``; the value is YAML.

    A value that is not YAML is kept as text; one over the YAML limits (deep
    nesting, an alias bomb) is an error.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} must look like 'section.field=value'", field="--set")
    path = key.split(".")
    if len(path) > MAX_DEPTH:
        raise ConfigError(
            f"override key {show(key)} is {len(path)} levels deep; at most {MAX_DEPTH} allowed",
            field="--set",
        )
    value = load_value(raw, field=key) if raw.strip() else None
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Returns a copy of ``data`` with each ``a.b=value`` override applied."""
    import copy

    out = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        try:
            set_path(out, ".".join(path), value)
        except ConfigError as exc:
            raise ConfigError(f"override {text!r}: {exc.message}", field=exc.field) from None
    return out


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Sets ``data["a"]["b"] = value`` for ``"a.b"``, creating sections (or filling empty ones)."""
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"'{part}' is a value, not a section", field=dotted)
        node = child
    node[last] = value


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
    data = apply_overrides(read_yaml(path, example="recipes/digits.yaml"), overrides or [])
    recipe = validate(Recipe, data, file=str(path))
    return recipe


def recipe_to_yaml(recipe: Recipe) -> str:
    """The resolved recipe, as written next to a run's outputs."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
