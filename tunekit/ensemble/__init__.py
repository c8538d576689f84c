"""Ensembles of finished runs: members, top-k trials, evaluation, export, ``tunekit ensemble``.

Above the run builder; the training-time hooks and ensemble modules are :mod:`tunekit.averaging`.
"""

from typing import TYPE_CHECKING

from tunekit._lazy import attach

if TYPE_CHECKING:
    from ._evaluate import build_ensemble, comparison, select_from_run, select_from_study
    from ._export import export_ensemble, read_metadata
    from ._members import checkpoint_member, open_run
    from ._topk import rank_trials, topk_members

# Imported on first use (see tunekit._lazy), so that `tunekit ensemble --help` stays light.
_SOURCES = {
    "._evaluate": ("build_ensemble", "comparison", "select_from_run", "select_from_study"),
    "._export": ("export_ensemble", "read_metadata"),
    "._members": ("checkpoint_member", "open_run"),
    "._topk": ("rank_trials", "topk_members"),
}
if not TYPE_CHECKING:
    __getattr__, __dir__ = attach(__name__, _SOURCES)

__all__ = [
    "build_ensemble",
    "checkpoint_member",
    "comparison",
    "export_ensemble",
    "open_run",
    "rank_trials",
    "read_metadata",
    "select_from_run",
    "select_from_study",
    "topk_members",
]
