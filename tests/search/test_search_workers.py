"""Many workers on one study: PostgreSQL with 3 processes, SIGKILL mid-trial, DDP trials, divergence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import all_trials, start_cli, wait_for_running

from tunekit.search import LivenessSpec, open_search, open_storage, run_worker


def test_three_workers_share_one_study_on_postgres(
    postgres: Any, write_study: Callable[..., Path], tmp_path: Path
) -> None:
    # A generous grace: this test is about sharing work, not about declaring workers dead
    # (on a loaded 2-core machine a heartbeat thread can be starved for seconds).
    study = write_study("pg3.yaml", name="pg3", liveness={"heartbeat_s": 1, "grace_s": 60})
    out = tmp_path / "pg3"
    proc = start_cli(
        "search", "--study", str(study), "--storage", postgres.url, "--workers", "3", "--out", str(out), "--no-progress"
    )  # fmt: skip
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr[-3000:]
    trials = all_trials(postgres.url, out, "pg3")
    assert set(trials) == {"pg3.coarse", "pg3.fine"}
    for name, planned in (("pg3.coarse", 4), ("pg3.fine", 2)):
        ts = trials[name]
        numbers = [t.number for t in ts]
        assert len(numbers) == len(set(numbers)) == len(ts), numbers  # no duplicate trial numbers
        finished = [t for t in ts if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len(finished) == len(ts) and len(ts) >= planned, [t.state for t in ts]
        for t in ts:
            # No lost results: each trial's value is the one its own run wrote.
            run_dir = Path(t.user_attrs["run_dir"])
            assert (run_dir / "summary.json").is_file()
            if t.state == TrialState.COMPLETE:
                import json

                best = json.loads((run_dir / "summary.json").read_text())["best"]["value"]
                assert t.value == best
    # Several worker processes took part (each trial records which one ran it).
    workers = {t.user_attrs["worker"] for ts in trials.values() for t in ts}
    assert len(workers) >= 2, workers
    assert "study pg3" in stderr and "best val/top1" in stdout


def _sigkill_case(
    url: str | None, write_study: Callable[..., Path], tmp_path: Path, name: str
) -> None:
    grace = 3.0
    study_file = write_study(
        f"{name}.yaml",
        **{
            "name": name,
            "stages": [{"name": "coarse", "sampler": "random", "trials": 3, "epochs": 4}],
            "liveness": {"heartbeat_s": 1, "grace_s": grace, "max_retry": 2},
        },
    )
    out = tmp_path / name
    args = [
        "search",
        "--study",
        str(study_file),
        "--out",
        str(out),
        "--no-progress",
        "--set",
        "recipe.train.max_steps_per_epoch=12",
    ]
    if url:
        args += ["--storage", url]
    victim = start_cli(*args)
    running = wait_for_running(url, out, name)
    victim.send_signal(signal.SIGKILL)
    killed_at = time.time()
    victim.communicate(timeout=30)
    # A second worker finds the silent trial, fails it and runs its parameters again.
    ctx = open_search(
        str(study_file), out=out, storage=url, overrides=["recipe.train.max_steps_per_epoch=12"]
    )
    run_worker(ctx, poll_s=0.2)
    trials = next(iter(all_trials(url, out, name).values()))
    dead = next(t for t in trials if t.number == running.number)
    assert dead.state == TrialState.FAIL
    assert dead.datetime_complete is not None
    failed_after = dead.datetime_complete.timestamp() - killed_at
    assert failed_after <= grace + 4.0, failed_after
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retries) == 1 and retries[0].params == dead.params
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    # Every planned trial is accounted for: 3 finished, plus the one that died.
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3 and len(trials) == 4
    assert isinstance(dead.datetime_start, datetime)


def test_sigkilled_worker_on_the_default_storage(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    _sigkill_case(None, write_study, tmp_path, "killj")


def test_sigkilled_worker_on_postgres(
    postgres: Any, write_study: Callable[..., Path], tmp_path: Path
) -> None:
    _sigkill_case(postgres.url, write_study, tmp_path, "killpg")


def test_ddp_trials_with_pruning(write_study: Callable[..., Path], tmp_path: Path) -> None:
    study_file = write_study(
        "ddp.yaml",
        **{
            "name": "ddp",
            "gpus_per_trial": 2,
            "stages": [
                {
                    "name": "coarse",
                    "trials": 2,
                    "epochs": 2,
                    "pruner": {"name": "median", "n_startup_trials": 1},
                }
            ],
        },
    )
    out = tmp_path / "ddp"
    more = ["--set", "recipe.train.max_steps_per_epoch=6", "--set", "recipe.data.train_subset=256"]
    more += ["--set", "recipe.diagnostics.enabled=false"]
    ctx = open_search(str(study_file), out=out)
    stage = ctx.search.stages[0]
    ctx.search.space(stage)
    # A good trial first, then one that learns nothing: the median pruner must stop it.
    study = ctx.search.optuna_study(stage)
    study.enqueue_trial({"optim.lr": 0.1, "optim.weight_decay": 1e-4})
    study.enqueue_trial({"optim.lr": 1e-4, "optim.weight_decay": 1e-4})
    proc = start_cli(
        "search", "--study", str(study_file), "--out", str(out), "--no-progress", *more
    )
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr[-3000:]
    good, bad = next(iter(all_trials(None, out, "ddp").values()))
    assert good.state == TrialState.COMPLETE and good.user_attrs["epochs_run"] == 2
    assert bad.state == TrialState.PRUNED, (bad.intermediate_values, good.intermediate_values)
    # Rank 0 reported each epoch, at its optimizer step (6 an epoch); all ranks stopped
    # together right after the pruned one.
    stopped = bad.user_attrs["epochs_run"]
    assert stopped < 2 and sorted(bad.intermediate_values) == [6 * e for e in range(1, stopped + 1)]
    import json

    for t in (good, bad):
        summary = json.loads((Path(t.user_attrs["run_dir"]) / "summary.json").read_text())
        assert summary["world_size"] == 2  # trained by two gloo processes
    assert (
        f"pruned at step {6 * stopped}, epoch {stopped} "
        in json.loads((Path(bad.user_attrs["run_dir"]) / "summary.json").read_text())["stop_reason"]
    )


def test_diverging_trials_are_pruned_with_the_reason_and_the_study_goes_on(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    study_file = write_study(
        "nan.yaml",
        **{
            "name": "nan",
            "space": {"optim.lr": {"type": "log_uniform", "low": 1e4, "high": 1e5}},
            "stages": [{"name": "coarse", "trials": 2, "epochs": 2}],
        },
    )
    ctx = open_search(
        str(study_file), out=tmp_path / "nan", overrides=["recipe.optim.nesterov=false"]
    )
    run_worker(ctx)
    trials = ctx.search.trials(ctx.search.stages[0])
    assert len(trials) == 2
    for t in trials:
        assert t.state == TrialState.PRUNED
        assert "non-finite" in t.user_attrs["failure_reason"]


def test_further_rounds_stop_at_the_trial_budget(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    study_file = write_study(
        "rounds.yaml",
        name="rounds",
        stages=[
            {"name": "coarse", "sampler": "qmc", "trials": 2, "epochs": 1},
            {"name": "fine", "sampler": "tpe", "trials": 1, "epochs": 2, "refine": {"top_k": 1}},
        ],
        rounds={"extra": 2, "max_trials": 4},
    )
    ctx = open_search(str(study_file), out=tmp_path / "rounds")
    assert [s.name for s in ctx.search.stages] == ["coarse", "fine", "fine2", "fine3"]
    assert run_worker(ctx) == 4
    counts = {s.name: len(ctx.search.trials(s)) for s in ctx.search.stages}
    assert counts == {"coarse": 2, "fine": 1, "fine2": 1, "fine3": 0}
    # Each further round is refined from the one before it.
    fine = ctx.search.space(ctx.search.stages[1])["optim.lr"]
    fine2 = ctx.search.space(ctx.search.stages[2])["optim.lr"]
    assert fine.dist.low <= fine2.dist.low < fine2.dist.high <= fine.dist.high
    # `fine` trains longer than `coarse`, so it starts from coarse's best; `fine2` trains as
    # `fine` did, where that would repeat fine's best run, so it samples its own.
    coarse_best = max(ctx.search.trials(ctx.search.stages[0]), key=lambda t: t.value or 0.0)
    (first_fine,) = ctx.search.trials(ctx.search.stages[1])
    assert first_fine.user_attrs.get("seeded_from") == coarse_best.number
    assert first_fine.params == coarse_best.params
    (first_fine2,) = ctx.search.trials(ctx.search.stages[2])
    assert "seeded_from" not in first_fine2.user_attrs
    assert first_fine2.params != first_fine.params


def test_a_journal_lock_left_by_a_dead_worker_is_taken_over_within_the_grace(
    tmp_path: Path,
) -> None:
    spec = LivenessSpec(heartbeat_s=1, grace_s=3)
    storage = open_storage(None, tmp_path, spec)
    optuna.create_study(storage=storage, study_name="s")
    # What a worker killed in the middle of an append leaves: the lock, held by no one.
    journal = tmp_path / "study.journal"
    Path(f"{journal}.lock").symlink_to(journal)
    started = time.monotonic()
    optuna.create_study(storage=open_storage(None, tmp_path, spec), study_name="t")
    waited = time.monotonic() - started
    # Optuna's own default would wait 30 s; the liveness grace is 3 s.
    assert 2.5 <= waited <= 3 + 2, waited
    assert not Path(f"{journal}.lock").exists()


def _killed_worker_search(
    write_study: Callable[..., Path], tmp_path: Path, name: str
) -> tuple[Path, subprocess.Popen[str], optuna.trial.FrozenTrial]:
    study_file = write_study(
        f"{name}.yaml",
        name=name,
        stages=[{"name": "coarse", "sampler": "random", "trials": 3, "epochs": 4}],
        liveness={"heartbeat_s": 1, "grace_s": 3, "max_retry": 2},
    )
    out = tmp_path / name
    proc = start_cli(
        "search", "--study", str(study_file), "--out", str(out), "--workers", "2", "--no-progress",
        "--set", "recipe.train.max_steps_per_epoch=12",
    )  # fmt: skip
    running = wait_for_running(None, out, name)
    return out, proc, running


def _worker_pid(trial: optuna.trial.FrozenTrial) -> int:
    return int(trial.user_attrs["worker"].rsplit(":", 1)[1])


def test_a_search_whose_killed_worker_was_retried_exits_0_and_names_the_retry(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    out, proc, running = _killed_worker_search(write_study, tmp_path, "killw")
    os.kill(_worker_pid(running), signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr[-3000:]
    trials = all_trials(None, out, "killw")["killw.coarse"]
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == running.number]
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
    said = f"trial {running.number} (worker killed) was retried as trial {retry.number}"
    assert said in stdout, stdout
    assert "best val/top1" in stdout and "Traceback" not in stderr
    assert "was killed by SIGKILL; the plan was finished without it" in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    assert summary["retries"] == [
        {
            "stage": "coarse",
            "trial": running.number,
            "reason": "worker killed",
            "retried_as": retry.number,
        }
    ]


def test_a_search_whose_workers_all_died_exits_1_with_one_line(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    out, proc, _ = _killed_worker_search(write_study, tmp_path, "killall")
    # Both workers, once each has a trial: nothing is left to finish the plan.
    deadline = time.monotonic() + 120
    while True:
        trials = all_trials(None, out, "killall")["killall.coarse"]
        pids = {
            _worker_pid(t)
            for t in trials
            if t.state == TrialState.RUNNING and "worker" in t.user_attrs
        }
        if len(pids) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(pids) == 2, pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, (stdout, stderr[-3000:])
    lines = stderr.strip().splitlines()
    last = lines[-1]
    assert last.startswith("tunekit: error: the search stopped before its plan was done"), stderr
    assert "killed by SIGKILL" in last and "run the same command again to resume" in last
    assert "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False


def test_sigterm_and_sighup_stop_as_ctrl_c_does_and_only_once() -> None:
    from tunekit.search._signals import Stopped, exit_code, stop_on_signals

    before = signal.getsignal(signal.SIGHUP)
    with pytest.raises(Stopped) as info, stop_on_signals():
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(5)
    assert info.value.signum == signal.SIGHUP and exit_code(info.value) == 129
    assert signal.getsignal(signal.SIGHUP) == before
    # A second signal during the clean-up the first one started does not cut it short.
    cleaned = False
    with pytest.raises(Stopped) as info, stop_on_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            cleaned = True
    assert cleaned and exit_code(info.value) == 143


def test_worker_exits_in_words() -> None:
    from types import SimpleNamespace

    from tunekit.search._spawn import worker_exits

    procs = [SimpleNamespace(returncode=c, pid=100 + i) for i, c in enumerate((0, -9, 2, 143, 1))]
    assert worker_exits(procs) == [  # type: ignore[arg-type]
        "worker 1 (pid 101) was killed by SIGKILL",
        "worker 2 (pid 102) stopped on the error above",
        "worker 3 (pid 103) was stopped by SIGTERM",
        "worker 4 (pid 104) exited with code 1",
    ]


def test_retries_are_chained_and_what_is_left_is_said(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    from tunekit.search._liveness import retry_trial
    from tunekit.search._worker import retries, unfinished

    ctx = open_search(str(write_study()), out=tmp_path / "r")
    stage = ctx.search.stages[0]
    ctx.search.space(stage)
    study = ctx.search.optuna_study(stage)
    assert unfinished(ctx.search) == "stage coarse has 0 of 4 trials finished"
    for reason in ("worker silent for 4.0s (killed?)", "RuntimeError: boom"):
        trial = study.ask({"optim.lr": optuna.distributions.FloatDistribution(0.01, 0.5, log=True)})
        trial.set_user_attr("failure_reason", reason)
        study.tell(trial, state=TrialState.FAIL)
        retry_trial(study, study._storage.get_trial(trial._trial_id), max_retry=2)
    assert retries(ctx.search) == [
        {"stage": "coarse", "trial": 0, "reason": "worker killed", "retried_as": 1},
        {"stage": "coarse", "trial": 1, "reason": "RuntimeError: boom", "retried_as": 2},
    ]
    assert unfinished(ctx.search) == "stage coarse has 0 of 4 trials finished, 1 waiting to run"
    # Optuna's retry callback appends to the history it is given: not to this process's view.
    first_retry = next(t for t in study.get_trials(deepcopy=False) if t.number == 1)
    assert first_retry.system_attrs["retry_history"] == [0]
