"""The run directory: checked before building, one process at a time, resumable from any state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tunekit import load_recipe, train
from tunekit.core import load_checkpoint, save_atomic
from tunekit.engine import HookBase
from tunekit.errors import CheckpointError, TunekitError
from tunekit.outputs import RunDirBusyError, RunDirLock, check_output_dir, check_output_file
from tunekit.run import resolve_run_dir

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "data.image_size=8",
    "data.train_subset=128",
    "data.val_subset=64",
    "model.width=4",
    "train.batch_size=32",
    "train.max_steps_per_epoch=3",
    "diagnostics.enabled=false",
]


def _recipe(tmp_path: Path, *extra: str):
    return load_recipe(
        REPO / "recipes" / "digits.yaml", [*TINY, f"output_dir={tmp_path / 'runs'}", *extra]
    )


def test_resume_auto_starts_when_there_is_nothing_and_continues_when_there_is(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(CheckpointError, match="--resume auto starts the run"):
        train(_recipe(tmp_path, "train.epochs=1"), out=run_dir, resume="last", progress=False)
    assert not run_dir.exists()

    first = train(_recipe(tmp_path, "train.epochs=1"), out=run_dir, resume="auto", progress=False)
    assert first["epochs_run"] == 1 and first["steps"] == 3
    # A later call of the same command (a longer plan, as after a preemption) picks it up.
    second = train(_recipe(tmp_path, "train.epochs=2"), out=run_dir, resume="auto", progress=False)
    assert second["epochs_run"] == 2 and second["steps"] == 6
    steps = [
        json.loads(line)["step"]
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["kind"] == "epoch"
    ]
    assert steps == [3, 6]


def test_resume_auto_without_out_finds_the_latest_run_or_starts_one(tmp_path):
    recipe = _recipe(tmp_path, "train.epochs=1")
    run_dir, ckpt = resolve_run_dir(recipe, None, "auto")
    assert ckpt is None and run_dir.parent == tmp_path / "runs"
    summary = train(recipe, resume="auto", progress=False)
    again, ckpt = resolve_run_dir(recipe, None, "auto")
    assert again == Path(summary["run_dir"]) and ckpt == again / "checkpoints" / "last.pt"


def test_stale_temp_files_of_a_killed_write_are_removed_on_start(tmp_path):
    run_dir = tmp_path / "run"
    train(_recipe(tmp_path, "train.epochs=1"), out=run_dir, progress=False)
    stale = run_dir / "checkpoints" / ".last.pt.k3j2h1.tmp"
    stale.write_bytes(b"half a checkpoint")
    keep = run_dir / "checkpoints" / "notes.tmp"  # not one of ours: no leading dot
    keep.write_text("mine")
    train(_recipe(tmp_path, "train.epochs=2"), out=run_dir, resume="auto", progress=False)
    assert not stale.exists() and keep.exists()


_HOLDER = """
import sys, time
from tunekit.outputs import RunDirLock
RunDirLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_process_is_refused_and_a_killed_holders_lock_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirBusyError, match=rf"in use by process {holder.pid} on "):
            train(_recipe(tmp_path, "train.epochs=1"), out=run_dir, progress=False)
        # Refused before writing anything: the holder's directory is as it was.
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    summary = train(_recipe(tmp_path, "train.epochs=1"), out=run_dir, progress=False)
    assert summary["epochs_run"] == 1
    # Released when the run ends: the next one takes it at once.
    with RunDirLock(run_dir) as lock:
        assert lock.held


def test_the_lock_is_per_directory_and_released_after_an_error(tmp_path):
    with RunDirLock(tmp_path / "a"), RunDirLock(tmp_path / "b"):
        pass
    with pytest.raises(TunekitError):
        train(_recipe(tmp_path, "model.name=no_such_net"), out=tmp_path / "a", progress=False)
    with RunDirLock(tmp_path / "a") as lock:
        assert lock.held


@pytest.mark.parametrize("where", ["file", "under_file", "read_only"])
def test_an_output_place_that_cannot_be_written_is_refused_before_anything_is_built(
    tmp_path, where
):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    if where == "file":
        out, needle = blocker, "is a file, not a directory"
    elif where == "under_file":
        out, needle = blocker / "run", "is a file, not a directory"
    else:
        if os.geteuid() == 0:
            out = Path("/sys/tunekit-run")  # mounted read-only: refused even to root
            if os.access("/sys", os.W_OK) and Path("/sys").stat().st_mode & 0o222:
                pytest.skip("no read-only place here")
        else:
            locked = tmp_path / "locked"
            locked.mkdir(mode=0o555)
            out = locked / "run"
        needle = "choose a writable place"
    with pytest.raises(TunekitError, match=needle) as info:
        train(_recipe(tmp_path), out=out, progress=False)
    assert info.value.field == "--out" and "\n" not in str(info.value)
    with pytest.raises(TunekitError, match=needle):
        check_output_file(out / "report.html")
    assert blocker.read_text() == "x"


def test_checking_an_output_place_creates_nothing(tmp_path):
    check_output_dir(tmp_path / "a" / "b" / "c")
    assert list(tmp_path.iterdir()) == []


def test_a_run_that_fails_before_training_leaves_no_directory(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(TunekitError):
        train(
            _recipe(tmp_path, "diagnostics.enabled=true", "diagnostics.activations=[no_such]"),
            out=run_dir,
            progress=False,
        )
    assert not run_dir.exists()


class _FailAt(HookBase):
    def __init__(self, step: int) -> None:
        self.at = step

    def after_step(self) -> None:
        if self.trainer.step == self.at:
            raise RuntimeError("the data server went away")


def test_a_run_that_fails_while_training_keeps_its_files_and_says_why(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError):
        train(_recipe(tmp_path, "train.epochs=2"), out=run_dir, hooks=[_FailAt(5)], progress=False)
    failed = json.loads((run_dir / "failed.json").read_text())
    assert failed["error"] == "RuntimeError" and failed["step"] == 5
    assert failed["message"] == "the data server went away"
    assert (run_dir / "checkpoints" / "last.pt").is_file() and (run_dir / "recipe.yaml").is_file()
    summary = train(_recipe(tmp_path, "train.epochs=2"), out=run_dir, resume="auto", progress=False)
    assert summary["epochs_run"] == 2 and not (run_dir / "failed.json").exists()


class _Opaque:
    pass


def test_a_checkpoint_holding_code_is_refused_in_one_whole_sentence(tmp_path, recwarn):
    path = tmp_path / "evil.pt"
    torch.save({"format": "tunekit-checkpoint-v1", "x": _Opaque()}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "_Opaque" in msg and "weights_only=True" in msg and "state_dict" in msg
    assert "\n" not in msg and msg.endswith("path)")
    assert not [w for w in recwarn if "weights_only" in str(w.message)]
    good = save_atomic({"format": "tunekit-checkpoint-v1"}, tmp_path / "good.pt")
    assert load_checkpoint(good)["format"] == "tunekit-checkpoint-v1"
