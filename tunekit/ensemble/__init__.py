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
else:
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
