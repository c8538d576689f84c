"""Errors that reach the user as one line, not a traceback.

A :class:`TunekitError` is a user's mistake (a bad recipe value, a missing
file, a checkpoint that is not one). The CLI prints ``str(error)`` and exits
with code 2. Anything else is a bug in tunekit and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any


class TunekitError(Exception):
    """A mistake in the user's input, reported in one line.

    Args:
        message: what is wrong and what is allowed.
        file: the file the bad value came from, if any.
        field: the dotted field name, if any.
    """

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.message = message
        self.file = file
        self.field = field
        super().__init__(self.format())

    def format(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.field:
            where.append(f"field '{self.field}'")
        prefix = ": ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class ConfigError(TunekitError):
    """A recipe or study file that does not validate."""


class CheckpointError(TunekitError):
    """A file that is not a readable tunekit checkpoint."""


class DataError(TunekitError):
    """A dataset that is missing or malformed."""


@contextmanager
def in_file(file: str | None) -> Iterator[None]:
    """Names ``file`` in a mistake raised inside that does not name a file of its own.

    Dataset and model builders know the field that is wrong, not which recipe
    it came from; their callers do.
    """
    try:
        yield
    except TunekitError as exc:
        if exc.file is None and file is not None:
            raise type(exc)(exc.message, file=file, field=exc.field) from None
        raise


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Returns ``" (did you mean 'x'?)"`` for the closest choice, or ``""``."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def unknown_choice(kind: str, value: Any, choices: Iterable[str], **where: Any) -> TunekitError:
    """A one-line error for a name that is not in a registry, listing the valid ones."""
    names = sorted(choices)
    return ConfigError(
        f"unknown {kind} {value!r}{did_you_mean(str(value), names)}; choose one of: {', '.join(names)}",
        **where,
    )


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of ``str(exc)`` (its type's name when it has no text), cut to ``limit``.

    Library errors (torch's compilers, SQLAlchemy, pickle) can run to pages; a
    one-line message quotes only their first line.
    """
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:limit] if limit is not None else line
