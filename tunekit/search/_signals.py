"""Child processes that end with their parent, and SIGTERM/SIGHUP taken as Ctrl-C.

A command that starts servers or workers must not leave them behind, however
it is stopped. SIGTERM and SIGHUP are raised as :class:`Stopped` (a
``KeyboardInterrupt``), so one clean-up path serves all three signals; a
server's children start in their own process group, so the group (with the
grandchildren in it) is stopped at once; and on Linux each child asks the
kernel for a signal when its parent dies, the backstop for a parent killed
outright (SIGKILL), where no handler runs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C's ``KeyboardInterrupt`` would be."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code(exc: KeyboardInterrupt) -> int:
    """The shell's code for a process ended by the signal: 128 + its number (130 for Ctrl-C)."""
    return 128 + (exc.signum if isinstance(exc, Stopped) else int(signal.SIGINT))


@contextmanager
def stop_on_signals(*, sigint: bool = False) -> Iterator[None]:
    """Raises :class:`Stopped` on SIGTERM and SIGHUP (and on SIGINT too, with ``sigint``) once.

    Only the first signal raises: a second one (a terminal's Ctrl-C and a parent's
    SIGTERM arriving together) must not cut short the clean-up the first started.
    SIGINT is left alone when it is ignored (a background job). Outside the main
    thread, where Python cannot set handlers, this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = [signal.SIGTERM, signal.SIGHUP]
    if sigint and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signums.append(signal.SIGINT)
    fired = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if fired:
            return
        fired = True
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Stopped(signum)

    old = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux send ``sig`` to the child when this process dies.

    None where there is no ``prctl`` (not Linux). The kernel sends the signal when
    the *thread* that started the child ends, so start children from the main thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request was made
            os.kill(os.getpid(), sig)

    return preexec


def start_child(cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Starts a server process in its own process group, to end when this process ends."""
    return subprocess.Popen(cmd, start_new_session=True, preexec_fn=die_with_parent(), **kwargs)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (a zombie waiting to be reaped does not)."""
    if os.path.isdir("/proc/self"):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != b"Z":
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_group(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """Ends ``proc`` and every process in its group: SIGTERM, then SIGKILL after ``timeout``.

    ``proc`` must have been started with its own group (:func:`start_child`);
    its grandchildren (TensorBoard's data server) are in that group too.
    """
    pgid = proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + timeout
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; its children, reparented, may take a moment longer.
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _group_alive(pgid):
            return
    proc.wait()
