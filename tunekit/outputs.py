"""Where a command writes: output places checked first, and one process per run directory.

A command that trains for an hour must not find out at the end that it cannot
write; and two commands pointed at the same run directory must not both write
into it. So the output place is created and locked before anything is built:

    with RunDirLock(run_dir):       # refuses a second process, one line naming the first
        remove_stale_temp_files(run_dir)
        ...train...

The lock is an ``flock`` on ``RUN_DIR/.lock``: the kernel drops it when the
holding process ends, however it ends, so a lock left by a killed process is
taken over by the next one without any clean-up. This module imports no heavy
library, so the CLI can check its output places before it loads torch.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from tunekit.errors import TunekitError

try:  # POSIX; elsewhere a run directory is not locked (there is no kernel lock to lean on)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
#: Set for the workers a launcher starts under its own lock on this run directory.
LOCKED_BY_PARENT_ENV = "TUNEKIT_RUN_DIR_LOCKED"


class RunDirBusyError(TunekitError):
    """Another process holds the run directory."""


def check_output_dir(path: str | os.PathLike[str], *, field: str = "--out") -> Path:
    """Raises a one-line error unless ``path`` is, or can be made, a writable directory.

    Catches the places a run cannot write to before anything costly happens: an
    existing regular file, a path under a file, a read-only or unwritable
    directory. Creates nothing (a probe file is written and removed again).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise TunekitError(
            f"{str(path)!r} is a file, not a directory; choose a directory to write into",
            field=field,
        )
    nearest = path
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    if not nearest.is_dir():
        raise TunekitError(
            f"{str(path)!r} cannot be created: {str(nearest)!r} is a file, not a directory",
            field=field,
        )
    # os.access answers for the permission bits, not for a read-only mount seen by root;
    # writing a real file is the one test that holds everywhere.
    probe = nearest / f".tunekit-write-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise TunekitError(
            f"cannot write into {str(nearest)!r} ({exc.strerror or type(exc).__name__}); "
            "choose a writable place",
            field=field,
        ) from None
    return path


def check_output_file(path: str | os.PathLike[str], *, field: str = "--out") -> Path:
    """Raises a one-line error unless ``path`` can be written as a file; creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise TunekitError(
            f"{str(path)!r} is a directory; give the name of a file to write (in it or elsewhere)",
            field=field,
        )
    check_output_dir(path.parent, field=field)
    return path


def remove_stale_temp_files(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Removes the ``.NAME.*.tmp`` files that a kill during an atomic write left behind.

    Only safe under the run directory's lock: then no other process is writing one.
    """
    removed = []
    for tmp in Path(run_dir).rglob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def is_empty_run_dir(path: str | os.PathLike[str]) -> bool:
    """True for a directory that holds nothing but (at most) its lock file, or none at all."""
    path = Path(path)
    return not path.is_dir() or all(p.name == LOCK_NAME for p in path.iterdir())


def _holder(lock_file: Path) -> str:
    try:
        info: dict[str, Any] = json.loads(lock_file.read_text())
    except (OSError, ValueError):
        return "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    command = " ".join(str(a) for a in info.get("argv", []))[:120]
    return (
        f"process {info.get('pid', '?')} on {info.get('host', '?')} (started {started}: {command})"
    )


class RunDirLock:
    """An exclusive lock on a run directory for as long as this process trains in it.

    Args:
        run_dir: the directory (created if needed).
        field: the option that named it, for the error message.

    Raises:
        RunDirBusyError: another live process holds the directory.
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, field: str = "--out") -> None:
        self.run_dir = Path(run_dir)
        self.field = field
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunDirLock:
        if fcntl is None or self._fd is not None:
            return self
        if os.environ.get(LOCKED_BY_PARENT_ENV) == str(self.run_dir.resolve()):
            return self  # the launcher that started this worker holds it for the whole run
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TunekitError(
                f"cannot create {str(self.run_dir)!r} ({exc.strerror or type(exc).__name__}); "
                "choose a writable place",
                field=self.field,
            ) from None
        lock_file = self.run_dir / LOCK_NAME
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirBusyError(
                f"{str(self.run_dir)!r} is in use by {_holder(lock_file)}; wait for it to "
                "finish or choose another output directory",
                field=self.field,
            ) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "argv": sys.argv,
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        # The file stays: unlinking it would let a third process lock a new inode while a
        # second one still waits on the old.
        if self._fd is not None and fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
