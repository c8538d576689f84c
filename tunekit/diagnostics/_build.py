"""The diagnostic hooks a recipe's ``diagnostics`` section asks for."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tunekit.engine import HookBase

from ._activations import ActivationMonitor
from ._guards import Guards
from ._ratios import UpdateRatioMonitor
from ._tensorboard import TensorBoardWriter
from ._throughput import ThroughputMonitor

if TYPE_CHECKING:
    from tunekit.config import DiagnosticsConfig


def diagnostic_hooks(cfg: DiagnosticsConfig, run_dir: Path) -> list[HookBase]:
    """Builds the hooks for ``cfg`` (none when ``cfg.enabled`` is false).

    Args:
        cfg: the recipe's ``diagnostics`` section.
        run_dir: the run directory (TensorBoard files go to ``run_dir/tb``).
    """
    if not cfg.enabled:
        return []
    histograms = cfg.histogram_interval if cfg.histograms else None
    hooks: list[HookBase] = [
        # Throughput costs nothing to measure: with an automatic interval it keeps 20 steps.
        ThroughputMonitor(cfg.first_interval),
        UpdateRatioMonitor(
            cfg.interval,
            bounds=(cfg.ratio_bounds[0], cfg.ratio_bounds[1]),
            patience=cfg.ratio_patience,
            keep_updates_every=histograms if cfg.tensorboard else None,
        ),
    ]
    if cfg.guards:
        hooks.append(
            Guards(
                spike_factor=cfg.spike_factor,
                spike_window=cfg.spike_window,
                gradient_check_interval=cfg.gradient_check_interval,
            )
        )
    if cfg.activations != "off":
        hooks.append(ActivationMonitor(cfg.activations, cfg.activation_interval))
    if cfg.tensorboard:
        hooks.append(TensorBoardWriter(run_dir / "tb", histograms))
    return hooks
