"""Helpers shared by the search tests: read a study back, start the CLI, wait for a trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[2]


def all_trials(url: str | None, out: Path, name: str) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """Every stage study's trials, read back from the storage (less any a worker took past
    its cell's plan and never ran: those are failed at once and marked ``tunekit:surplus``)."""
    from tunekit.search import LivenessSpec, open_storage

    storage = open_storage(url, out, LivenessSpec())
    result = {}
    for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if s.study_name.startswith(name + "."):
            result[s.study_name] = optuna.load_study(
                study_name=s.study_name, storage=storage
            ).get_trials()
            extra = [t for t in result[s.study_name] if t.system_attrs.get("tunekit:surplus")]
            assert all(t.state == optuna.trial.TrialState.FAIL for t in extra)
            assert not any(t.intermediate_values for t in extra), "a surplus trial ran"
            result[s.study_name] = [t for t in result[s.study_name] if t not in extra]
    return result


def _default_sigint() -> None:
    # A shell without job control starts background jobs with SIGINT ignored, and the
    # child would inherit that (Python then installs no KeyboardInterrupt handler): a
    # test suite run as `make test &` could not Ctrl-C its searches.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "tunekit", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def wait_for_running(
    url: str | None, out: Path, name: str, timeout: float = 120
) -> optuna.trial.FrozenTrial:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for ts in all_trials(url, out, name).values():
                for t in ts:
                    if t.state == TrialState.RUNNING and t.intermediate_values:
                        return t  # mid-trial: at least one epoch reported, more to come
        except Exception:
            pass  # storage not created yet
        time.sleep(0.2)
    raise TimeoutError("no trial started")


def one_line_error(capsys: Any, *argv: str) -> str:
    """Runs ``tunekit ARGV`` in-process; asserts exit 2 and a single ``tunekit: error:`` line."""
    from tunekit.cli import main

    rc = main(list(argv))
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tunekit: error: "), err
    return lines[0]


def assert_bad_study(
    capsys: Any, write_study: Any, tmp_path: Path, fields: dict[str, Any], expected: list[str]
) -> None:
    """A study file with ``fields`` is refused by ``tunekit search`` in one line that names the
    file and holds each of ``expected``, before anything is started."""
    path = write_study("bad.yaml", **fields)
    out = tmp_path / "o"
    line = one_line_error(
        capsys, "search", "--study", str(path), "--out", str(out), "--no-progress"
    )
    assert str(path) in line
    for part in expected:
        assert part in line, line
    assert not out.exists()  # nothing was started
