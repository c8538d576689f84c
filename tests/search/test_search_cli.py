"""The commands as users run them: COCO studies, Ctrl-C and resume, the dashboard servers."""

from __future__ import annotations

import json
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

from optuna.trial import TrialState
from search_helpers import REPO, all_trials, start_cli, wait_for_running

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
    "recipe.train.batch_size=2",
    "recipe.train.max_steps_per_epoch=1",
    "recipe.train.device=cpu",
    "recipe.diagnostics.enabled=false",
]


def test_coco_scratch_without_coco_says_where_it_is_expected(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    proc = cli("search", "--study", "coco_scratch", "--out", str(tmp_path / "c"), "--no-progress")
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
    assert summary["counts"]["complete"] == 2 and summary["metric"] == "val/AP"
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
        stages=[{"name": "coarse", "sampler": "random", "trials": 2, "epochs": 4}],
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


def _get(url: str, timeout: float = 90) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                assert r.status == 200
                return bytes(r.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_dashboard_serves_the_study_and_its_runs_on_localhost(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    from tunekit.search import open_search

    study_file = write_study("dash.yaml", name="dash")
    out = tmp_path / "dash"
    ctx = open_search(str(study_file), out=out)
    ctx.search.optuna_study(ctx.search.stages[0]).enqueue_trial({"optim.lr": 0.1})
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
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        studies = json.loads(_get(f"http://127.0.0.1:{port}/api/studies"))
        names = {s["study_name"] for s in studies["study_summaries"]}
        assert "dash.coarse" in names
        assert b"TensorBoard" in _get(f"http://127.0.0.1:{tb_port}/") or _get(
            f"http://127.0.0.1:{tb_port}/data/logdir"
        )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
