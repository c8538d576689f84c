"""Live training diagnostics, as trainer hooks.

- :class:`UpdateRatioMonitor`: per-layer update/weight ratios (measured from
  the optimizer's real change), gradient and weight norms, every N steps, with
  warnings for layers out of bounds.
- :class:`ActivationMonitor`: mean, std, dead units and saturation of chosen
  layers, sampled through forward hooks that exist only for the sampled step.
- :class:`Guards`: a non-finite loss or gradient stops the step with a
  :class:`NonFiniteError`; loss spikes become events.
- :class:`StepRecorder`: one record stream per run (into ``metrics.jsonl``);
  :class:`TensorBoardWriter` and :class:`LiveView` write it out.

:func:`diagnostic_hooks` builds them from a recipe's ``diagnostics`` section.
No diagnostic can crash the run it watches: a hook that fails records a
``diagnostic_error`` event and turns itself off.
"""

from ._activations import ActivationMonitor, activation_stats, auto_layers
from ._base import DiagnosticHook, never_fails
from ._build import diagnostic_hooks
from ._errors import NonFiniteError
from ._guards import Guards
from ._layers import ParamLayout, layer_of
from ._live import LiveView, worst_layers
from ._ratios import UpdateRatioMonitor
from ._records import StepRecorder
from ._tensorboard import TensorBoardWriter

__all__ = [
    "ActivationMonitor",
    "DiagnosticHook",
    "Guards",
    "LiveView",
    "NonFiniteError",
    "ParamLayout",
    "StepRecorder",
    "TensorBoardWriter",
    "UpdateRatioMonitor",
    "activation_stats",
    "auto_layers",
    "diagnostic_hooks",
    "layer_of",
    "never_fails",
    "worst_layers",
]
