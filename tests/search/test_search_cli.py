"""The commands as users run them: COCO studies, Ctrl-C and resume, the dashboard servers."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState
from search_helpers import (
    REPO,
    _default_sigint,
    all_trials,
    one_line_error,
    start_cli,
    wait_for_running,
)

# The study's own stages and cells on a stand-in: the shapes set, and RetinaNet (the study's
# detector) on the tiny GN backbone instead of ResNet-50, as the coco_rethinking test does. The
# ResNet-50 one cost ~4 s a trial on one core, over a third of it writing its checkpoint after
# every epoch, and nothing asserted here depends on the backbone.
SHAPES_AT_A_TINY_BUDGET = [
    "gpus_per_trial=1",
    "stages.coarse.trials=1",
    "stages.coarse.epochs=1",
    "stages.fine.trials=1",
    "stages.fine.epochs=1",
    "recipe.data.name=shapes",
    "recipe.data.kwargs={train: 8, val: 4, seed: 0}",
    "recipe.data.image_size=64",
    "recipe.data.augment.min_size=[64]",
    "recipe.data.augment.max_size=64",
    "recipe.data.num_workers=0",
    "recipe.model.name=retinanet_tiny_fpn",
    "recipe.model.width=8",
    "recipe.train.batch_size=2",
    "recipe.train.max_steps_per_epoch=1",
    "recipe.train.device=cpu",
    "recipe.diagnostics.enabled=false",
]


def test_coco_scratch_without_coco_says_where_it_is_expected(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    # One process a trial: on a machine without GPUs, 8 a trial is refused first.
    out = str(tmp_path / "c")
    proc = cli(
        "search", "--study", "coco_scratch", "--set", "gpus_per_trial=1", "--out", out, "--no-progress"
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "field 'data.root'" in lines[0] and "--set recipe.data.root=/path/to/coco" in lines[0]
    assert "annotations/instances_train2017.json" in lines[0]


def test_coco_scratch_on_shapes_at_a_tiny_budget_runs_end_to_end(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    out = tmp_path / "c"
    args = ["search", "--study", "coco_scratch", "--out", str(out), "--no-progress"]
    for o in SHAPES_AT_A_TINY_BUDGET:
        args += ["--set", o]
    proc = cli(*args, env={"TUNEKIT_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == ["coarse", "fine"]
    # One trial a stage in each of the 4 cells (schedule lengths 1x, 2x, 3x, 6x).
    assert [c["cell"] for c in summary["cells"]] == [f"length_multiplier={m}" for m in (1, 2, 3, 6)]
    assert summary["counts"]["complete"] == 2 * 4 and summary["metric"] == "val/AP"
    best = summary["best"]
    assert best["params"]["schedule.length_multiplier"] in (1, 2, 3, 6)
    run = json.loads((Path(best["run_dir"]) / "summary.json").read_text())
    assert (
        run["task"] == "detection"
        and run["epochs_run"] == best["params"]["schedule.length_multiplier"]
    )
    # The scientific parameter's best trial per value is in the summary.
    assert summary["best_by_scientific"]["schedule.length_multiplier"]


def test_ctrl_c_stops_cleanly_and_the_study_resumes(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    study_file = write_study(
        "intr.yaml",
        name="intr",
        # Long enough that the signal, sent once a trial has reported, lands before the study
        # ends even when reading the storage is slow: 4 epochs raced it on a loaded machine.
        stages=[{"name": "coarse", "sampler": "random", "trials": 2, "epochs": 8}],
    )
    out = tmp_path / "intr"
    args = ["search", "--study", str(study_file), "--out", str(out), "--no-progress"]
    args += ["--set", "recipe.train.max_steps_per_epoch=12"]
    proc = start_cli(*args)
    wait_for_running(None, out, "intr")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr
    trials = all_trials(None, out, "intr")["intr.coarse"]
    (stopped,) = [t for t in trials if t.state == TrialState.FAIL]
    assert "interrupted" in stopped.user_attrs["failure_reason"]
    assert not any(t.state == TrialState.RUNNING for t in trials)
    assert (out / "summary.json").is_file()
    # Running the same command again finishes the study, the interrupted parameters included.
    proc = start_cli(*args)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr[-2000:]
    trials = all_trials(None, out, "intr")["intr.coarse"]
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == stopped.number]
    assert len(retry) == 1 and retry[0].params == stopped.params
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 90, alive: subprocess.Popen[str] | None = None) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                assert r.status == 200
                return bytes(r.read())
        except OSError:
            if alive is not None and alive.poll() is not None:
                raise AssertionError(
                    f"the server exited: {alive.communicate()[1][-2000:]}"
                ) from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--workers", "-1"], "field '--workers': value -1 is not allowed"),
        (["--workers", "0"], "field '--workers': value 0 is not allowed"),
        (["--workers", "100000"], "field '--workers': value 100000 is not allowed"),
        (
            ["--set", "recipe.data.root=/no/such/dir", "--set", "recipe.data.name=cifar10"],
            "data.root",
        ),
        (["--from-sanity", "/no/such/sanity.json"], "field '--from-sanity'"),
    ],
    ids=[
        "negative workers",
        "no workers",
        "too many workers",
        "missing data",
        "missing sanity file",
    ],
)
def test_a_search_that_fails_validation_leaves_no_files(
    extra: list[str],
    expected: str,
    write_study: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    study_file = write_study("v.yaml", name="v")
    out = tmp_path / "v"
    line = one_line_error(
        capsys, "search", "--study", str(study_file), "--out", str(out), "--no-progress", *extra
    )
    assert expected in line, line
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))


def _stat(pid: int) -> list[bytes] | None:
    """``/proc/PID/stat`` from the state on (state, ppid, pgrp, ...); None for a gone process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None


def _running(pids: set[int] | None = None, pgid: int | None = None) -> set[int]:
    """Of ``pids`` (or of every process in group ``pgid``), those running (zombies are not)."""
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields is None or fields[0] == b"Z":
            continue
        if (pids is not None and int(entry) in pids) or (
            pgid is not None and int(fields[2]) == pgid
        ):
            out.add(int(entry))
    return out


def _children(pid: int) -> set[int]:
    return {
        int(e)
        for e in os.listdir("/proc")
        if e.isdigit() and (f := _stat(int(e))) is not None and int(f[1]) == pid
    }


def _refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _start_dashboard(study_file: Path, out: Path) -> tuple[subprocess.Popen[str], int, int]:
    port, tb_port = _free_port(), _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "tunekit",
        "dashboard",
        "--study",
        str(study_file),
        "--out",
        str(out),
    ]
    cmd += ["--port", str(port), "--tb-port", str(tb_port)]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    return proc, port, tb_port


@pytest.mark.parametrize(
    "sig",
    [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGKILL],
    ids=["SIGTERM", "SIGHUP", "SIGINT", "SIGKILL"],
)
def test_the_dashboard_serves_on_localhost_and_its_servers_end_with_it(
    sig: signal.Signals, write_study: Callable[..., Path], tmp_path: Path
) -> None:
    from tunekit.search import open_search

    study_file = write_study("dash.yaml", name="dash")
    out = tmp_path / "dash"
    ctx = open_search(str(study_file), out=out)
    ctx.search.optuna_study(ctx.search.stages[0]).enqueue_trial({"optim.lr": 0.1})
    proc, port, tb_port = _start_dashboard(study_file, out)
    family: set[int] = set()
    try:
        studies = json.loads(_get(f"http://127.0.0.1:{port}/api/studies", alive=proc))
        assert "dash.coarse" in {s["study_name"] for s in studies["study_summaries"]}
        _get(f"http://127.0.0.1:{tb_port}/data/logdir", alive=proc)
        (tb,) = _children(proc.pid)  # TensorBoard; its data server is TensorBoard's child
        family = {tb} | _children(tb)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while (_running(family) or _running(pgid=tb)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(family) and not _running(pgid=tb)
        assert _refused(port) and _refused(tb_port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _running(family):  # what a failed test leaves running
            os.kill(pid, signal.SIGKILL)


def test_sigterm_stops_the_search_and_its_workers_cleanly(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    study_file = write_study(
        "term.yaml",
        name="term",
        stages=[{"name": "coarse", "sampler": "random", "trials": 2, "epochs": 4}],
        # Dead-worker detection is not what is tested: a grace long enough that a worker
        # stalled by a busy machine is not reaped ("worker silent") before the signal.
        liveness={"heartbeat_s": 0.5, "grace_s": 60, "max_retry": 2},
    )
    out = tmp_path / "term"
    proc = start_cli(
        "search", "--study", str(study_file), "--out", str(out), "--workers", "2", "--no-progress",
        "--set", "recipe.train.max_steps_per_epoch=12",
    )  # fmt: skip
    wait_for_running(None, out, "term")
    workers = _children(proc.pid)
    assert len(workers) == 2, workers
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 143, stderr[-2000:]
    assert "tunekit: interrupted (SIGTERM); the study is saved" in stderr
    assert "Traceback" not in stderr
    assert not _running(workers)
    # Each worker told its trial it was stopped and queued it again, as Ctrl-C does.
    trials = all_trials(None, out, "term")["term.coarse"]
    assert not any(t.state == TrialState.RUNNING for t in trials)
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert stopped and all(
        "interrupted (SIGTERM)" in t.user_attrs["failure_reason"] for t in stopped
    )
    waiting = {t.system_attrs["failed_trial"] for t in trials if t.state == TrialState.WAITING}
    assert waiting == {t.number for t in stopped}


@pytest.mark.parametrize("command", ["report", "dashboard"])
def test_a_study_never_searched_is_one_line_and_no_files(
    command: str,
    write_study: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    study_file = write_study("never.yaml", name="never")
    out = tmp_path / "never"
    line = one_line_error(capsys, command, "--study", str(study_file), "--out", str(out))
    assert "study 'never' has not been searched yet" in line
    assert f"no journal file {out / 'study.journal'}" in line
    assert not out.exists()


@pytest.mark.parametrize("text", ["{", "[]", "{}", '{"study": 5}', '"digits"', "[" * 100_000])
def test_a_study_directory_with_a_malformed_summary_is_one_line(
    text: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    study_dir = tmp_path / "s"
    study_dir.mkdir()
    (study_dir / "summary.json").write_text(text)
    line = one_line_error(capsys, "report", "--study", str(study_dir))
    assert f"{study_dir / 'summary.json'}: cannot tell which study this directory holds" in line


def test_a_trial_curve_skips_bad_records(tmp_path: Path) -> None:
    from tunekit.search._report import read_curve

    (tmp_path / "metrics.jsonl").write_text(
        '{"kind": "epoch", "epoch": 1, "step": 4, "val/top1": 0.5, "train/loss": 2.0}\n'
        '{"kind": "epoch", "epoch": null, "step": 8, "val/top1": 0.6}\n'
        '{"kind": "epoch", "epoch": 2, "step": 8, "val/top1": "0.7"}\n'
        "[1, 2]\n"
        '{"kind": "epoch", "epoch": 3, "step": 12, "val/top1": 0.8}\n'
        '{"kind": "epoch", "epoch": 4, "st'
    )
    curve = read_curve(str(tmp_path), "val/top1")
    assert curve["epoch"] == [1.0, 3.0] and curve["metric"] == [0.5, 0.8]
    assert curve["train_loss"][0] == 2.0 and math.isnan(curve["train_loss"][1])


@pytest.mark.parametrize("which", ["--port", "--tb-port"])
def test_a_dashboard_port_in_use_is_one_line(
    which: str,
    write_study: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from tunekit.search import open_search

    study_file = write_study("busy.yaml", name="busy")
    out = tmp_path / "busy"
    ctx = open_search(str(study_file), out=out)
    ctx.search.optuna_study(ctx.search.stages[0])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = {"--port": str(_free_port()), "--tb-port": str(_free_port()), which: str(busy)}
        argv = ["dashboard", "--study", str(study_file), "--out", str(out)]
        line = one_line_error(capsys, *argv, *(a for kv in ports.items() for a in kv))
    assert (
        f"field '{which}': value {busy} is not allowed: port {busy} on 127.0.0.1 is in use" in line
    )


def test_a_damaged_journal_line_is_one_line_naming_it(
    write_study: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    out = tmp_path / "study"
    out.mkdir()
    journal = out / "study.journal"
    good = '{"op_code":0,"worker_id":"w","study_name":"s.coarse","directions":[2]}\n'
    journal.write_text(good + '{"op_code": 5, "trial_id": \n' + good)
    before = journal.read_bytes()
    line = one_line_error(capsys, "search", "--study", str(write_study()), "--out", str(out))
    assert "line 2 of 3 is damaged" in line and "delete that line" in line, line
    assert journal.read_bytes() == before
    # A last line cut by a kill is what Optuna skips itself: not an error.
    from tunekit.search._storage import check_journal

    journal.write_text(good + '{"op_code": 5, "tri')
    check_journal(journal)
