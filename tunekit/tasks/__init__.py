"""What each kind of model brings to a run: data and model builders, losses and metrics.

``get_task(recipe.task)`` gives the :class:`TaskSpec` that the run builder, the sanity checks
and the ensembles ask instead of branching on the task's name.
"""

from typing import TYPE_CHECKING

from tunekit._lazy import attach

if TYPE_CHECKING:
    from ._base import TASKS, HeadPrior, HeadProbe, TaskSpec, get_task
    from ._classification import ClassificationTask
    from ._multilabel import (
        LOSSES,
        MultiHotTargets,
        MultilabelSoftmaxLoss,
        MultilabelTask,
        average_precision,
        build_loss,
        mean_average_precision,
        multi_hot_dataset,
        precision_at_k,
        to_multi_hot,
    )
    from ._tta import VIEWS, TTAHook, TTAModel, five_crops, tta_views
else:
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
