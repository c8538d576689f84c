"""Where a study lives: a journal file under the study's directory, or any Optuna storage URL.

The default needs no server: Optuna's journal storage on a file, which many
processes on one machine (or on a shared file system) append to safely. A URL
(``sqlite:///...``, ``postgresql://user@host/db``) opens an RDB storage with
Optuna's heartbeat switched on, so several machines can search one study.
"""

from __future__ import annotations

import json
import re
import threading
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from tunekit.errors import TunekitError

from ._study import LivenessSpec

JOURNAL_FILE = "study.journal"


class StorageError(TunekitError):
    """A storage URL that cannot be opened."""


def masked(url: str) -> str:
    """The URL with its password replaced by ``***`` (for messages and summaries)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def is_rdb_url(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def journal_path(url: str | None, study_dir: Path) -> Path | None:
    """The journal file that ``url`` names (None for RDB URLs)."""
    if url is None:
        return study_dir / JOURNAL_FILE
    if is_rdb_url(url):
        return None
    for prefix in ("journal:", "file://"):
        if url.startswith(prefix):
            return Path(url[len(prefix) :])
    return Path(url)


def lock_grace(liveness: LivenessSpec) -> int:
    """Seconds before a journal lock left by a dead worker is taken over (3 to 30)."""
    return int(min(30, max(3, round(liveness.grace_s))))


def check_journal(path: Path) -> None:
    """Refuses a journal with a damaged line before Optuna reads it.

    Optuna skips a last line cut by a kill, but any other line it cannot decode
    stops every read of the study with a ``JSONDecodeError``: say which line,
    once, instead.
    """
    if not path.is_file():
        return
    try:
        lines = path.read_bytes().splitlines(keepends=True)
    except OSError as exc:
        raise StorageError(
            f"cannot read journal file {path}: {exc.strerror}", field="--storage"
        ) from None
    for number, line in enumerate(lines[:-1], start=1):
        problem = None
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            problem = f"not JSON ({exc.msg} at column {exc.colno})"
        except UnicodeDecodeError:
            problem = "not UTF-8 text"
        else:
            if not isinstance(entry, dict) or not isinstance(entry.get("op_code"), int):
                problem = "not an Optuna journal entry (no op_code)"
        if problem:
            raise StorageError(
                f"journal file {path}: line {number} of {len(lines)} is damaged: {problem}; "
                "Optuna cannot read the study past it. Keep a copy of the file, delete that "
                "line (what it recorded is lost) and run again",
                field="--storage",
            )


def open_storage(
    url: str | None,
    study_dir: Path | None = None,
    liveness: LivenessSpec | None = None,
    *,
    create: bool = True,
) -> BaseStorage:
    """Opens a study's storage, raising a one-line :class:`StorageError` when it can't.

    ``url`` None means ``<study_dir>/study.journal``; a path, ``journal:PATH`` or
    ``file://PATH`` means that journal file (which must exist unless ``create``);
    anything else with ``://`` is an RDB URL. ``liveness`` sets the heartbeat and the
    journal lock's grace (default ``LivenessSpec()``).
    """
    liveness = liveness or LivenessSpec()
    if url is None and study_dir is None:
        raise ValueError("open_storage needs a storage URL or the study directory")
    path = journal_path(url, study_dir or Path())
    if path is not None:
        if not create and not path.is_file():
            raise StorageError(
                f"no such journal file {str(path)!r} (pass an Optuna storage URL or a journal file)",
                field="--storage",
            )
        check_journal(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # A worker SIGKILLed while appending leaves the file's lock behind, and every
            # other worker waits out the lock's grace before taking it over: Optuna's 30 s
            # default would hold a dead worker's trial past the liveness grace. An append
            # holds the lock for milliseconds, so the liveness grace is ample for a live one.
            lock = JournalFileSymlinkLock(str(path), grace_period=lock_grace(liveness))
            backend = HoldingJournalBackend(str(path), lock_obj=lock)
            storage = JournalStorage(backend)
            _BACKENDS[storage] = backend
            return storage
        except OSError as exc:
            raise StorageError(
                f"cannot open journal file {path}: {exc.strerror}", field="--storage"
            ) from None
    assert url is not None
    with warnings.catch_warnings():
        # The heartbeat and retry callback are marked experimental; they are what we need.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return RDBStorage(
                url,
                engine_kwargs=_engine_kwargs(url),
                heartbeat_interval=max(1, round(liveness.heartbeat_s)),
                grace_period=max(2, round(liveness.grace_s)),
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=liveness.max_retry
                ),
            )
        except Exception as exc:  # sqlalchemy's errors vary by driver; all mean "can't use it"
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            reason = re.sub(r"^\(\S+\)\s*", "", reason)
            raise StorageError(
                f"cannot open storage {masked(url)}: {reason}; check the URL, that the server "
                "is running and reachable, and that its driver is installed (pip install 'tunekit[postgres]')",
                field="--storage",
            ) from None


def _engine_kwargs(url: str) -> dict[str, object]:
    if url.startswith("postgresql"):
        # Fail fast on an unreachable host instead of waiting for the OS's TCP timeout.
        return {"connect_args": {"connect_timeout": 5}, "pool_pre_ping": True}
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}}
    return {"pool_pre_ping": True}


#: The backend of each journal storage :func:`open_storage` opened (for :func:`one_write`).
_BACKENDS: weakref.WeakKeyDictionary[BaseStorage, HoldingJournalBackend] = (
    weakref.WeakKeyDictionary()
)
#: Per thread: the entries each journal backend (by id) holds back until :func:`one_write` ends.
_HELD = threading.local()


class HoldingJournalBackend(JournalFileBackend):
    """Optuna's journal file, whose appends one thread can hold back and write as one.

    Optuna writes one entry per change (a user attribute, a state), and each is its own
    locked, flushed and fsynced append: most of a short trial's bookkeeping cost. The
    entries held are the ones Optuna wrote, in order, so the file reads as before.
    """

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        held = getattr(_HELD, "logs", {}).get(id(self))
        if held is not None:
            held.extend(logs)
        else:
            super().append_logs(logs)


@contextmanager
def one_write(storage: BaseStorage, trial_id: int) -> Iterator[None]:
    """Writes what ``storage`` is told about trial ``trial_id`` in the block as one append.

    Only for writes nothing in the block reads back (attributes, the final state): the
    storage sees them when the block ends. Then, as Optuna itself would at each write, it
    raises the storage's refusal (``UpdateFinishedTrialError`` when another worker failed
    the trial meanwhile). A no-op on other storages, and inside another ``one_write``.
    (After such a refusal this process's own view of the trial may still show what the
    block set: Optuna's trial writes into the journal's cached trial, which the refused
    entries did not replace. The file, and every other process, have the refusal.)
    """
    backend = _BACKENDS.get(storage)
    held_by_thread: dict[int, list[dict[str, Any]]] = _HELD.__dict__.setdefault("logs", {})
    if backend is None or id(backend) in held_by_thread:
        yield
        return
    held = held_by_thread[id(backend)] = []
    try:
        yield
    finally:
        del held_by_thread[id(backend)]
        if held:
            backend.append_logs(held)
            _read_back(storage, trial_id, len(held))


def _read_back(storage: BaseStorage, trial_id: int, entries: int) -> None:
    """Has the storage read the entries just appended, raising the first it refused.

    The storage replays an entry of its own that it refuses by raising, one entry per
    raise; the entries after it would raise again at its next read, in whatever call made
    it. So read until a read passes (at most once per entry), then raise the first.
    """
    first: Exception | None = None
    for _ in range(entries + 1):
        try:
            storage.get_trial(trial_id)
        except Exception as exc:  # what Optuna raises at the write it would have made
            first = first or exc
            continue
        break
    if first is not None:
        raise first
