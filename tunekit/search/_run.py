"""``tunekit.search.run``: a whole search from Python, with a recipe or a function to call."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from tunekit.errors import ConfigError

from ._python import Objective
from ._spawn import spawn_workers, wait_workers
from ._validate import check_workers, prepare_search
from ._worker import run_worker, write_summary


def run(
    study: str | os.PathLike[str],
    *,
    objective: Objective | None = None,
    overrides: Sequence[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    storage: str | None = None,
    workers: int | None = None,
    max_trials: int | None = None,
) -> dict[str, Any]:
    """Runs a study's stages to the end (or resumes them) and returns its summary.

    The study runs what its file names: a recipe, or ``objective: "pkg.mod:fn"``.
    ``objective`` passes the function itself (the file may then leave out
    ``objective:``); it is called in this process, so it needs ``workers`` 1 (the
    ``pkg.mod:fn`` form reaches worker processes). Rerunning resumes from the storage.

    Args:
        study: a study name (``studies/NAME.yaml``) or a path to a study file.
        objective: ``fn(params, trial)`` returning the trial's value (see
            :class:`ObjectiveTrial`).
        overrides: ``--set`` overrides (``stages.coarse.trials=8``).
        out: the study's directory (default ``<output_dir>/<name>``).
        storage: an Optuna storage URL (default: a journal file in the study's directory).
        workers: trials at once on this machine (default: the study's ``workers``).
        max_trials: stop after this many trials started here (a single in-process worker).

    Returns:
        What ``summary.json`` holds (written too): the stages, their bests, ``complete``.

    Raises:
        TunekitError: a mistake in the study, the arguments or the objective's import.

    Example::

        def objective(params, trial):
            return -(params["x"] - 2.0) ** 2

        summary = tunekit.search.run("studies/mine.yaml", objective=objective)
        print(summary["best"]["params"])
    """
    plan = prepare_search(
        str(study),
        overrides=list(overrides or []),
        out=out,
        storage=storage,
        workers=workers,
        objective=objective,
    )
    n = workers if workers is not None else plan.study.workers
    file = str(plan.study_file)
    if objective is not None and n > 1:
        raise ConfigError(
            f"value {n} is not allowed with a function passed in: it runs in this process "
            'only; name it in the study file (objective: "pkg.mod:fn") to run it on '
            "worker processes, or use workers=1",
            file=file,
            field="workers",
        )
    check_workers(plan.study, n, file=file)
    in_process = n == 1 and plan.study.trial_gpus == 1
    if max_trials is not None and not in_process:
        raise ConfigError(
            f"max_trials counts the trials of one in-process worker, and this runs {n} "
            "worker processes; use workers=1 or --set rounds.max_trials=...",
            file=file,
            field="max_trials",
        )
    ctx = plan.open()
    if in_process:
        run_worker(ctx, max_trials=max_trials)
    else:
        wait_workers(spawn_workers(ctx, n))
    return write_summary(ctx)
