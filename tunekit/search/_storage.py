"""Where a study lives: a journal file under the study's directory, or any Optuna storage URL.

The default needs no server: Optuna's journal storage on a file, which many
processes on one machine (or on a shared file system) append to safely. A URL
(``sqlite:///...``, ``postgresql://user@host/db``) opens an RDB storage with
Optuna's heartbeat switched on, so several machines can search one study.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

try:  # Optuna >= 4.0; earlier versions set the attributes one by one
    from optuna.storages.journal._storage import JournalOperation
except ImportError:  # pragma: no cover
    JournalOperation = None  # type: ignore[assignment,misc]

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
            return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
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


def set_trial_user_attrs(storage: BaseStorage, trial_id: int, attrs: dict[str, Any]) -> None:
    """Sets several user attributes of a trial, on a journal file in one write.

    Optuna's journal takes one attribute per entry, and each entry is its own locked,
    flushed and fsynced append: most of a short trial's bookkeeping. Here the entries are
    the ones ``set_trial_user_attr`` writes, appended together, so any Optuna reads them
    as before. Other storages get one call per attribute.

    Raises:
        UpdateFinishedTrialError: the trial is finished (another worker failed it), as
            ``set_trial_user_attr`` raises.
    """
    if len(attrs) > 1 and _batches(storage):
        assert isinstance(storage, JournalStorage)
        with storage._thread_lock:
            worker_id = storage._replay_result.worker_id
            storage._backend.append_logs(
                [
                    {
                        "op_code": JournalOperation.SET_TRIAL_USER_ATTR,
                        "worker_id": worker_id,
                        "trial_id": trial_id,
                        "user_attr": {key: value},
                    }
                    for key, value in attrs.items()
                ]
            )
            _sync_all(storage)
        return
    for key, value in attrs.items():
        storage.set_trial_user_attr(trial_id, key, value)


def _batches(storage: BaseStorage) -> bool:
    """Whether ``storage`` is a journal whose internals :func:`set_trial_user_attrs` knows."""
    return (
        JournalOperation is not None
        and isinstance(storage, JournalStorage)
        and all(
            hasattr(storage, name)
            for name in ("_thread_lock", "_replay_result", "_backend", "_sync_with_backend")
        )
        and hasattr(storage._replay_result, "worker_id")
    )


def _sync_all(storage: JournalStorage) -> None:
    """Reads the journal up to its end, re-raising the first refused entry of this worker's.

    Replaying an entry of this worker's for a finished trial raises, and the entries after
    it in the same append would raise again at the next read, in whatever call made it:
    read them all now (each raise has counted its entry as read).
    """
    first: UpdateFinishedTrialError | None = None
    while True:
        try:
            storage._sync_with_backend()
        except UpdateFinishedTrialError as exc:
            first = first or exc
            continue
        break
    if first is not None:
        raise first
