"""Coarse-to-fine hyperparameter search on Optuna: studies, stages, workers, liveness, reports.

A study (``studies/*.yaml``) names a recipe (or a Python function,
``objective: "pkg.mod:fn"``), a metric, a search space and stages. Each stage
is an Optuna study on a shared storage; workers on any number of processes and
machines take trials from it. :func:`run` runs one from Python.
"""

from typing import TYPE_CHECKING

from tunekit._lazy import attach

if TYPE_CHECKING:
    from ._builders import build_pruner, build_sampler
    from ._liveness import Heartbeat, reap_stale
    from ._objective import PruningHook, trial_recipe
    from ._python import ObjectiveTrial, load_objective
    from ._report import study_report, study_report_data, write_hparams
    from ._run import run
    from ._space import EdgeFlag, Range, refine_space
    from ._stages import StagedSearch, count_trials, plan_stages
    from ._storage import StorageError, open_storage
    from ._study import (
        LivenessSpec,
        ParamSpec,
        PrunerSpec,
        RefineSpec,
        StageSpec,
        Study,
        load_study,
    )
    from ._validate import SearchContext, open_search
    from ._worker import run_worker, write_summary
else:
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
