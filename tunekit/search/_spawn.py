"""``--workers N``: N worker processes on this machine, each with its own GPUs on a GPU machine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import torch

from tunekit.errors import ConfigError

from ._signals import die_with_parent

if TYPE_CHECKING:
    from ._validate import SearchContext


def gpu_groups(workers: int, per_trial: int) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES for each worker (None everywhere on a machine without GPUs)."""
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0:
        return [None] * workers
    if workers * per_trial > n:
        raise ConfigError(
            f"value {workers} is not allowed: {workers} workers x {per_trial} GPUs per trial "
            f"needs {workers * per_trial} GPUs and this machine has {n}",
            field="--workers",
        )
    return [",".join(str(i * per_trial + g) for g in range(per_trial)) for i in range(workers)]


def spawn_workers(ctx: SearchContext, workers: int) -> list[subprocess.Popen[bytes]]:
    """Starts ``workers`` worker processes on this machine (they end when this process ends)."""
    groups = gpu_groups(workers, ctx.study.trial_gpus)
    threads = max(1, (os.cpu_count() or 1) // max(1, workers * ctx.study.trial_gpus))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, gpus in enumerate(groups):
            env = dict(os.environ)
            env.setdefault("OMP_NUM_THREADS", str(threads))
            env["TUNEKIT_WORKER"] = str(i)
            if gpus is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpus
            cmd = [
                sys.executable, "-m", "tunekit", *ctx.worker_args(), "--as-worker", "--no-progress"
            ]  # fmt: skip
            # A worker stays in this process group, so a terminal's Ctrl-C reaches it and its
            # torchrun ranks directly; if this process is killed outright, the kernel sends it
            # SIGTERM, and it stops its trial cleanly.
            procs.append(subprocess.Popen(cmd, env=env, preexec_fn=die_with_parent()))
    except BaseException:
        stop_workers(procs)
        raise
    return procs


def wait_workers(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    """Waits for every worker and returns their exit codes (negative: killed by that signal).

    On Ctrl-C (or a SIGTERM/SIGHUP turned into one, see :func:`stop_on_signals`) it asks each
    worker to stop cleanly and waits for them.
    """
    try:
        return [p.wait() for p in procs]
    except KeyboardInterrupt:
        stop_workers(procs)
        raise


def stop_workers(procs: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    """SIGTERM each live worker (a worker stops its trial cleanly on it), SIGKILL it after ``timeout``."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def worker_exits(procs: list[subprocess.Popen[bytes]]) -> list[str]:
    """The workers that did not exit 0, in words (``worker 1 (pid 4242) was killed by SIGKILL``)."""
    out = []
    for i, p in enumerate(procs):
        code = p.returncode
        if code is None or code == 0:
            continue
        who = f"worker {i} (pid {p.pid})"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            out.append(f"{who} was killed by {name}")
        elif code == 2:
            out.append(f"{who} stopped on the error above")
        elif code - 128 in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            # A worker stops its trial cleanly on these and exits as a shell would report it.
            out.append(f"{who} was stopped by {signal.Signals(code - 128).name}")
        else:
            out.append(f"{who} exited with code {code}")
    return out
