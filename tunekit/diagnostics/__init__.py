"""Live training diagnostics, as trainer hooks.

- :class:`UpdateRatioMonitor`: per-layer update/weight ratios (measured from
  the optimizer's real change), gradient and weight norms, every N steps, with
  warnings for layers out of bounds.
- :class:`ActivationMonitor`: mean, std, dead units and saturation of chosen
  layers, sampled through forward hooks that exist only for the sampled step.
- :class:`Guards`: a non-finite loss or gradient stops the step with a
  :class:`NonFiniteError`; loss spikes become events.
- :class:`ThroughputMonitor`: steps and samples per second.
- :class:`TensorBoardWriter`: the trainer's metrics store as TensorBoard event files.

Each puts its values in the trainer's metrics store (``trainer.metrics``) and reads
nothing from the other hooks; the live view is the engine's ``ProgressHook(live=True)``.

:func:`diagnostic_hooks` builds them from a recipe's ``diagnostics`` section.
No diagnostic can crash the run it watches: a hook that fails records a
``diagnostic_error`` event and turns itself off.
"""

from typing import TYPE_CHECKING

from tunekit._lazy import attach

if TYPE_CHECKING:
    from ._activations import ActivationMonitor, activation_stats, auto_layers
    from ._base import DiagnosticHook, never_fails
    from ._build import diagnostic_hooks
    from ._errors import NonFiniteError
    from ._guards import Guards
    from ._layers import ParamLayout, layer_of
    from ._ratios import UpdateRatioMonitor
    from ._tensorboard import TensorBoardWriter
    from ._throughput import ThroughputMonitor
else:
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
