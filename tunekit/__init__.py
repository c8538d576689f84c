"""tunekit: the step-by-step tuning recipe for PyTorch classifiers and detectors, as commands.

The public API::

    from tunekit import load_recipe, train
    summary = train(load_recipe("recipes/digits.yaml", ["optim.lr=0.05"]), out="runs/demo")

Names are imported on first use (see ``tunekit._lazy``): ``import tunekit``
does not import torch.
"""

from typing import TYPE_CHECKING

from tunekit._lazy import attach
from tunekit.errors import TunekitError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from tunekit.config import Recipe, load_recipe
    from tunekit.engine import HookBase, Trainer
    from tunekit.monitor import watch
    from tunekit.run import build_components, build_trainer, train
    from tunekit.sanity import check_initial_loss, lr_range_test, overfit_small_sample
else:
    __getattr__, __dir__, __all__ = attach(
        __name__, __file__, eager=("TunekitError", "__version__")
    )
