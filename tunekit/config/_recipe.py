"""The recipe: one YAML file per training setup, validated into typed objects.

Names of datasets, models, optimizers and schedules are checked against the
builders' registries when the run is built (so a plugin can add names); their
shapes, ranges and types are checked here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator


class _Section(BaseModel):
    # Unknown keys are errors (with a "did you mean"), never silently ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


Norm = Literal["bn", "gn", "syncbn", "frozen_bn", "none"]


class AugmentConfig(_Section):
    """Training-time augmentation (torchvision's implementations)."""

    hflip: bool = False
    random_crop_padding: int = Field(0, ge=0)
    randaugment: bool = False
    randaugment_magnitude: int = Field(9, ge=0, le=30)
    random_erasing: float = Field(0.0, ge=0.0, le=1.0)
    # Detection: shorter side drawn from this range, as in the COCO recipes.
    min_size: list[PositiveInt] | None = None
    max_size: PositiveInt | None = None


class DataConfig(_Section):
    """Where the data comes from and how it is split and loaded."""

    name: str = "digits"
    root: str | None = None
    builder: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    image_size: PositiveInt = 32
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    num_workers: int = Field(0, ge=0)
    # A fixed subset of the training set (for quick studies and tests).
    train_subset: PositiveInt | None = None
    val_subset: PositiveInt | None = None
    augment: AugmentConfig = Field(default_factory=AugmentConfig)


class ModelConfig(_Section):
    """Which network, its norm layers, and where its starting weights come from."""

    name: str = "small_cnn"
    builder: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    width: PositiveInt = 32
    norm: Norm = "bn"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    drop_path: float = Field(0.0, ge=0.0, lt=1.0)
    # A local checkpoint file (never a download): a tunekit checkpoint or a state dict.
    weights: str | None = None
    # Freeze every stage up to and including this one ("stem", "layer1", ...).
    freeze_to: str | None = None
    # Replace the classifier head when the weights come from another task.
    reset_head: bool = True


class OptimConfig(_Section):
    """Optimizer and its hyperparameters."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: PositiveFloat = 0.1
    # Linear scaling rule: `lr` is given per 256 images and scaled by batch_size / 256.
    lr_per_256: bool = False
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0.0)
    # No weight decay on norm weights and biases (the usual choice for BN/GN nets).
    decay_norm_and_bias: bool = False
    grad_clip: PositiveFloat | None = None

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> OptimConfig:
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=true needs momentum > 0")
        return self


class ScheduleConfig(_Section):
    """Learning-rate schedule, stepped every iteration, with optional linear warmup."""

    name: str = "cosine"
    warmup_epochs: float = Field(0.0, ge=0.0)
    warmup_factor: float = Field(0.001, gt=0.0, le=1.0)
    # step: LR multiplied by gamma at these epochs.
    milestones: list[float] = Field(default_factory=list)
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    # cosine/linear/sgdr floor, as a fraction of the peak LR.
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)
    # sgdr: first cycle length in epochs and the growth of each next cycle.
    cycle_epochs: float = Field(1.0, gt=0.0)
    cycle_mult: float = Field(1.0, ge=1.0)
    # Schedule length (1x, 2x, 6x...): scales train.epochs and the milestones, not the warmup.
    length_multiplier: PositiveFloat = 1.0


class RegularizationConfig(_Section):
    """Loss-side regularisation (data-side lives in data.augment)."""

    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    mixup_alpha: float = Field(0.0, ge=0.0)
    cutmix_alpha: float = Field(0.0, ge=0.0)


class EarlyStoppingConfig(_Section):
    patience: PositiveInt = 5
    min_delta: float = Field(0.0, ge=0.0)


class TrainConfig(_Section):
    """The loop: length, batch, precision, evaluation and what to keep."""

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 64
    # Cut each epoch short (for smoke runs and search trials on big data).
    max_steps_per_epoch: PositiveInt | None = None
    eval_every: PositiveInt = 1
    # Metric that picks the best checkpoint and drives early stopping / pruning.
    metric: str = "val/top1"
    mode: Literal["max", "min"] = "max"
    early_stopping: EarlyStoppingConfig | None = None
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    deterministic: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    keep_last: PositiveInt = 1


class EmaConfig(_Section):
    """Polyak/EMA: an exponential moving average of the weights, evaluated beside the model."""

    decay: float = Field(0.999, gt=0.0, lt=1.0)
    # Warm the decay up as 1 - (1 + step)^-power (capped at `decay`), so that a
    # short run's average is not dominated by the initial weights.
    warmup: bool = True
    warmup_power: float = Field(0.75, gt=0.0, le=1.0)
    update_every: PositiveInt = 1
    # Buffers (BN statistics): "recalibrate" recomputes them on training batches
    # before each evaluation (and copies them where the model has no BN), "copy"
    # takes the model's, "ema" averages them like the weights.
    buffers: Literal["recalibrate", "copy", "ema"] = "recalibrate"
    recalibrate_batches: PositiveInt | None = 50


class SwaConfig(_Section):
    """Stochastic weight averaging: equal averaging from ``start_epoch`` on, with its own LR."""

    start_epoch: int = Field(ge=0)
    lr: PositiveFloat
    anneal_epochs: float = Field(1.0, ge=0.0)
    anneal_strategy: Literal["cos", "linear"] = "cos"
    # Training batches for the BN statistics of the average (None: one whole epoch).
    recalibrate_batches: PositiveInt | None = None


class SnapshotConfig(_Section):
    """Snapshot ensembles: a snapshot at the end of every SGDR cycle (needs schedule.name: sgdr)."""

    # The last M snapshots are evaluated alone and together.
    ensemble_last: PositiveInt = 3
    # Snapshot files kept on disk (None: all of them).
    keep: PositiveInt | None = None

    @model_validator(mode="after")
    def _keep_covers_ensemble(self) -> SnapshotConfig:
        if self.keep is not None and self.keep < self.ensemble_last:
            raise ValueError(
                f"keep ({self.keep}) must be at least ensemble_last ({self.ensemble_last})"
            )
        return self


class AveragingConfig(_Section):
    """Averaging after (and during) training: EMA, SWA and snapshot ensembles."""

    ema: EmaConfig | None = None
    swa: SwaConfig | None = None
    snapshots: SnapshotConfig | None = None


class DiagnosticsConfig(_Section):
    """Live diagnostics (see docs/diagnostics.md): on by default, each part switchable.

    Intervals are in optimizer steps; the defaults keep the cost under 2% of a step.
    """

    enabled: bool = True
    # Update/weight ratios, gradient and weight norms per layer, every `interval` steps.
    interval: PositiveInt = 20
    ratio_bounds: tuple[PositiveFloat, PositiveFloat] = (1e-4, 1e-2)
    # Checks in a row outside ratio_bounds before a layer is warned about.
    ratio_patience: PositiveInt = 3
    # Layers whose outputs are summarised (mean, std, dead units, saturation):
    # "auto" (the activation modules), "off", or a list of module names.
    activations: Literal["auto", "off"] | list[str] = "auto"
    activation_interval: PositiveInt = 100
    # Stop at a non-finite loss or gradient; record loss spikes as events.
    guards: bool = True
    # Steps between gradient checks (the loss is checked every step). 1 stops a
    # bad gradient before its step; more saves a gradient pass on models with
    # many parameters and little compute per step.
    gradient_check_interval: PositiveInt = 1
    spike_factor: float = Field(3.0, gt=1.0)
    spike_window: PositiveInt = 50
    tensorboard: bool = True
    histograms: bool = True
    histogram_interval: PositiveInt = 500
    # The rich live view in the terminal (replaces the plain progress bar).
    live: bool = True

    @model_validator(mode="after")
    def _check_intervals(self) -> DiagnosticsConfig:
        low, high = self.ratio_bounds
        if not low < high:
            raise ValueError(
                f"ratio_bounds must be [low, high] with low < high, got [{low}, {high}]"
            )
        if self.histograms and self.histogram_interval % self.interval:
            raise ValueError(
                f"histogram_interval ({self.histogram_interval}) must be a multiple of interval "
                f"({self.interval}), so update histograms have an update to show"
            )
        return self


class Recipe(_Section):
    """A whole training setup. See ``recipes/digits.yaml`` for an example."""

    name: str = "run"
    task: Literal["classification", "detection"] = "classification"
    seed: int = 0
    output_dir: str = "runs"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    regularization: RegularizationConfig = Field(default_factory=RegularizationConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    averaging: AveragingConfig = Field(default_factory=AveragingConfig)
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)
