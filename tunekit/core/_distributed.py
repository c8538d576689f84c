"""Process-group setup, rank helpers and the torchrun launcher.

One code path serves one process and many: with no ``RANK`` in the
environment, ``DistInfo`` describes a world of one and every collective is a
no-op.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks this rank's GPU when there is one, else the CPU."""
    if pref == "cpu" or (pref == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        from tunekit.errors import ConfigError

        raise ConfigError(
            "value 'cuda' is not allowed: no CUDA device is visible", field="train.device"
        )
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def init_distributed(device_pref: str = "auto") -> DistInfo:
    """Joins the process group that torchrun describes in the environment, if any.

    NCCL on GPUs, gloo on CPU. Safe to call twice.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_pref, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sums ``tensor`` over ranks in place (no-op in a world of one)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


#: Seconds torchrun gets to stop its ranks after the launcher is interrupted.
LAUNCH_STOP_GRACE_S = 30.0


def launch(nproc: int, module_args: list[str], *, env: dict[str, str] | None = None) -> int:
    """Runs ``python -m tunekit <module_args>`` in ``nproc`` processes under torchrun.

    Returns torchrun's exit code. A single machine uses ``--standalone`` (a free
    local rendezvous port); across machines, users run torchrun themselves.
    """
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "tunekit",
        *module_args,
    ]
    full_env = dict(os.environ)
    full_env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    if env:
        full_env.update(env)
    proc = subprocess.Popen(cmd, env=full_env)
    restore = _interrupt_on_termination()
    try:
        return proc.wait()
    except BaseException:
        # subprocess.call would SIGKILL torchrun here, orphaning its ranks; SIGTERM lets it
        # stop them (they save nothing mid-step, and the last checkpoint stays as it was).
        proc.terminate()
        try:
            proc.wait(timeout=LAUNCH_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    finally:
        restore()


def _interrupt_on_termination() -> Callable[[], None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt while a launcher waits, where nothing else
    handles them, so that it stops its ranks instead of dying and leaving them behind.

    Returns what puts the old handlers back.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:

            def handler(num: int, frame: FrameType | None) -> None:
                raise KeyboardInterrupt(signal.Signals(num).name)

            old[signum] = signal.signal(signum, handler)

    def restore() -> None:
        for signum, previous in old.items():
            signal.signal(signum, previous)

    return restore
