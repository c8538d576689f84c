"""Ensembles of finished runs: members, top-k trials, evaluation, export and ``tunekit ensemble``.

This package reads what training left behind (run directories, a study's
trials) and sits above the run builder (``tunekit.run``); the training-time
hooks that write snapshots and averaged models, and the ensemble modules
themselves, live below it in :mod:`tunekit.averaging`.
"""

from typing import TYPE_CHECKING

from tunekit._lazy import attach

if TYPE_CHECKING:
    from ._cli import add_ensemble_parser
    from ._evaluate import (
        Row,
        Selection,
        build_ensemble,
        comparison,
        evaluate,
        select_from_run,
        select_from_study,
    )
    from ._export import ExportResult, export_ensemble, read_metadata, run_exported
    from ._members import (
        Member,
        RunContext,
        averaged_member,
        checkpoint_member,
        open_run,
        run_members,
        snapshot_members,
    )
    from ._topk import RankedTrial, rank_trials, topk_members

# Imported on first use (see tunekit._lazy), so that `tunekit ensemble --help` stays light.
_SOURCES = {
    "._cli": ("add_ensemble_parser",),
    "._evaluate": (
        "Row",
        "Selection",
        "build_ensemble",
        "comparison",
        "evaluate",
        "select_from_run",
        "select_from_study",
    ),
    "._export": ("ExportResult", "export_ensemble", "read_metadata", "run_exported"),
    "._members": (
        "Member",
        "RunContext",
        "averaged_member",
        "checkpoint_member",
        "open_run",
        "run_members",
        "snapshot_members",
    ),
    "._topk": ("RankedTrial", "rank_trials", "topk_members"),
}
if not TYPE_CHECKING:
    __getattr__, __dir__ = attach(__name__, _SOURCES)

__all__ = [
    "ExportResult",
    "Member",
    "RankedTrial",
    "Row",
    "RunContext",
    "Selection",
    "add_ensemble_parser",
    "averaged_member",
    "build_ensemble",
    "checkpoint_member",
    "comparison",
    "evaluate",
    "export_ensemble",
    "open_run",
    "rank_trials",
    "read_metadata",
    "run_exported",
    "run_members",
    "select_from_run",
    "select_from_study",
    "snapshot_members",
    "topk_members",
]
