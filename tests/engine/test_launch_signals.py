"""A `train --nproc` launcher stopped by SIGTERM stops its ranks instead of leaving them behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _processes_naming(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = next(
                line
                for line in (entry / "status").read_text().splitlines()
                if line.startswith("State:")
            )
        except (OSError, StopIteration):
            continue
        if text in cmdline and "zombie" not in state:
            pids.append(int(entry.name))
    return pids


def test_sigterm_to_the_launcher_ends_every_rank(tmp_path):
    out = tmp_path / "ddp-run"
    sets = ["train.epochs=5000", "diagnostics.enabled=false", "data.image_size=8", "model.width=4"]
    argv = [sys.executable, "-m", "tunekit", "train", "--recipe", "recipes/digits.yaml"]
    argv += ["--out", str(out), "--nproc", "2", "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Output to a file, not a pipe: a pipe would make waiting on the launcher wait on the
    # ranks too, since they inherit it.
    log = (tmp_path / "launcher.log").open("w")
    launcher = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        # Up: the launcher, torchrun and both ranks name the run directory.
        while len(_processes_naming(str(out))) < 4:
            assert launcher.poll() is None, (tmp_path / "launcher.log").read_text()
            assert time.monotonic() < deadline, "the ranks never started"
            time.sleep(0.2)
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=60) != 0
        deadline = time.monotonic() + 30
        while _processes_naming(str(out)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processes_naming(str(out)) == []
    finally:
        for pid in _processes_naming(str(out)):
            os.kill(pid, signal.SIGKILL)
        if launcher.poll() is None:
            launcher.kill()
        log.close()
