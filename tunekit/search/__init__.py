"""Coarse-to-fine hyperparameter search on Optuna: studies, stages, workers, liveness, reports.

A study (``studies/*.yaml``) names a recipe, a metric, a search space and
stages. Each stage is an Optuna study on a shared storage; workers on any
number of processes and machines take trials from it.
"""

from typing import TYPE_CHECKING

from tunekit._lazy import attach

if TYPE_CHECKING:
    from ._liveness import Heartbeat, reap_stale
    from ._objective import PruningHook, trial_recipe
    from ._report import study_report, study_report_data, write_hparams
    from ._space import EdgeFlag, Range, refine_space
    from ._stages import StagedSearch, build_pruner, build_sampler, count_trials, plan_stages
    from ._storage import StorageError, journal_path, open_storage
    from ._study import (
        LivenessSpec,
        ParamSpec,
        PrunerSpec,
        RefineSpec,
        StageSpec,
        Study,
        load_study,
    )
    from ._workers import SearchContext, open_search, run_worker, write_summary

# Imported on first use (see tunekit._lazy): optuna and torch only when a study runs.
_SOURCES = {
    "._liveness": ("Heartbeat", "reap_stale"),
    "._objective": ("PruningHook", "trial_recipe"),
    "._report": ("study_report", "study_report_data", "write_hparams"),
    "._space": ("EdgeFlag", "Range", "refine_space"),
    "._stages": ("StagedSearch", "build_pruner", "build_sampler", "count_trials", "plan_stages"),
    "._storage": ("StorageError", "journal_path", "open_storage"),
    "._study": (
        "LivenessSpec",
        "ParamSpec",
        "PrunerSpec",
        "RefineSpec",
        "StageSpec",
        "Study",
        "load_study",
    ),
    "._workers": ("SearchContext", "open_search", "run_worker", "write_summary"),
}
if not TYPE_CHECKING:
    __getattr__, __dir__ = attach(__name__, _SOURCES)

__all__ = [
    "EdgeFlag",
    "Heartbeat",
    "LivenessSpec",
    "ParamSpec",
    "PrunerSpec",
    "PruningHook",
    "Range",
    "RefineSpec",
    "SearchContext",
    "StageSpec",
    "StagedSearch",
    "StorageError",
    "Study",
    "build_pruner",
    "build_sampler",
    "count_trials",
    "journal_path",
    "load_study",
    "open_search",
    "open_storage",
    "plan_stages",
    "reap_stale",
    "refine_space",
    "run_worker",
    "study_report",
    "study_report_data",
    "trial_recipe",
    "write_hparams",
    "write_summary",
]
