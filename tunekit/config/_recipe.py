"""The recipe: one YAML file per training setup, validated into typed objects.

Names of datasets, models, optimizers and schedules are checked against the
builders' registries when the run is built (so a plugin can add names); their
shapes, ranges and types are checked here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, PositiveFloat, PositiveInt, field_validator, model_validator

from tunekit.errors import did_you_mean

from ._base import _BOOL_HINT, FieldError, Section, metric_key

# Upper bounds: generous for any real setup, and low enough that a typo (an
# extra zero or three) is an error here rather than an allocation of petabytes.
MAX_IMAGE_SIZE = 8192
#: One global input batch (float32, before any activation): 8192 images of 800 px fit.
MAX_BATCH_BYTES = 64 * 2**30
MAX_BATCH_SIZE = 2**20
MAX_WIDTH = 4096
MAX_EPOCHS = 100_000
#: Steps, batches and dataset items.
MAX_COUNT = 10**9
MAX_WORKERS = 256
#: Files kept on disk and models kept in memory (checkpoints, snapshots).
MAX_KEPT = 1000
#: Batches accumulated into one optimizer step.
MAX_ACCUMULATE = 2**16
#: Entries of a list field (milestones, layer names, sizes).
MAX_ITEMS = 1000
#: The update-ratio interval that ``interval: auto`` measures at while it chooses (and
#: throughput keeps): the first of the cadences it picks from.
AUTO_FIRST_INTERVAL = 20
#: random.seed, numpy and torch.manual_seed all take 0 <= seed < 2**32.
MAX_SEED = 2**32 - 1

Epochs = Annotated[float, Field(ge=0.0, le=MAX_EPOCHS)]
Count = Annotated[int, Field(gt=0, le=MAX_COUNT)]
Size = Annotated[int, Field(gt=0, le=MAX_IMAGE_SIZE)]
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


def human_bytes(n: float) -> str:
    """``1.5 * 2**30`` -> ``"1.5 GiB"``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.3g} {units[i]}"


def batch_bytes(batch_size: int, image_size: int) -> float:
    """The memory of one batch of 3-channel float32 images of ``image_size`` pixels a side."""
    return 4.0 * 3 * batch_size * image_size * image_size


class _Section(Section):
    model_config = ConfigDict(validate_assignment=True)


Norm = Literal["bn", "gn", "syncbn", "frozen_bn", "none"]


class AugmentConfig(_Section):
    """Training-time augmentation (torchvision's implementations)."""

    hflip: bool = False
    random_crop_padding: int = Field(0, ge=0, le=MAX_IMAGE_SIZE)
    randaugment: bool = False
    randaugment_magnitude: int = Field(9, ge=0, le=30)
    random_erasing: float = Field(0.0, ge=0.0, le=1.0)
    # Detection: shorter side drawn from this range, as in the COCO recipes.
    min_size: list[Size] | None = Field(None, min_length=1, max_length=MAX_ITEMS)
    max_size: Size | None = None


class DataConfig(_Section):
    """Where the data comes from and how it is split and loaded."""

    name: str = "digits"
    root: str | None = None
    builder: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    # Bounded by Recipe, which knows the batch size that the memory depends on.
    image_size: PositiveInt = 32
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    # Each worker is a process with its own copy of the dataset object.
    num_workers: int = Field(0, ge=0, le=MAX_WORKERS)
    # Only these classes, relabelled 0..k-1 in the order given (a held-apart subset of the
    # classes, as a transfer target or its source); applied before the subsets.
    classes: list[Annotated[int, Field(ge=0, le=MAX_COUNT)]] | None = Field(
        None, min_length=1, max_length=MAX_ITEMS
    )
    # A fixed subset of the training set (for quick studies and tests).
    train_subset: Count | None = None
    val_subset: Count | None = None
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    @field_validator("classes")
    @classmethod
    def _distinct_classes(cls, classes: list[int] | None) -> list[int] | None:
        if classes is not None and len(set(classes)) != len(classes):
            raise ValueError(f"each class once, got {classes}")
        return classes


class ModelConfig(_Section):
    """Which network, its norm layers, and where its starting weights come from."""

    name: str = "small_cnn"
    builder: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    width: PositiveInt = 32
    norm: Norm = "bn"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    drop_path: float = Field(0.0, ge=0.0, lt=1.0)
    # A local checkpoint file (a tunekit checkpoint or a state dict), or torchvision weights
    # by name, "torchvision:ResNet50_Weights.IMAGENET1K_V2", read from the torch hub cache.
    # Never a download.
    weights: str | None = None
    # Norm layers of another kind in the weights (BN statistics into GN layers, or the
    # reverse) are an error unless this is false.
    weights_strict: bool = True
    # Freeze every stage up to and including this one ("stem", "layer1", ...): no gradients,
    # and eval mode (BN statistics kept as loaded) however the trainer sets the model's mode.
    freeze_to: str | None = None
    # Replace the classifier head when the weights come from another task.
    reset_head: bool = True

    @field_validator("width")
    @classmethod
    def _width_fits(cls, width: int) -> int:
        if width > MAX_WIDTH:
            # small_cnn's three stages (w, 2w, 4w channels) hold about 300 * w^2 weights
            need = human_bytes(4.0 * 300 * width * width)
            raise ValueError(
                f"width {width} would need ~{need} for small_cnn's weights alone "
                f"(about 300 x width^2 float32 parameters); at most {MAX_WIDTH} allowed"
            )
        return width


OptimName = Literal["sgd", "adamw", "adam", "rmsprop", "adagrad"]

#: Each optimizer's own settings and their defaults (torch.optim's, SGD's momentum aside);
#: lr, lr_per_256, weight_decay, decay_norm_and_bias, grad_clip, param_groups and
#: layer_decay belong to every optimizer.
OPTIMIZER_SETTINGS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.9, "nesterov": False},
    "adamw": {"betas": (0.9, 0.999), "eps": 1e-8},
    "adam": {"betas": (0.9, 0.999), "eps": 1e-8},
    "rmsprop": {"alpha": 0.99, "momentum": 0.0, "centered": False, "eps": 1e-8},
    "adagrad": {"lr_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10},
}
#: Largest LR multiplier of a parameter group (a typo guard, like the other bounds).
MAX_LR_MULT = 1e4


class OptimConfig(_Section):
    """Optimizer and its hyperparameters.

    ``weight_decay`` is decoupled for AdamW and an L2 term added to the gradient
    for the others (Adam's "coupled" weight decay). A setting of another
    optimizer (``momentum`` with ``name: adam``) is an error.
    """

    name: OptimName = "sgd"
    lr: PositiveFloat = 0.1
    # Linear scaling rule: `lr` is given per 256 images and scaled by the effective batch
    # (train.batch_size x train.accumulate_steps) / 256.
    lr_per_256: bool = False
    # The optimizers' own settings: None takes the default in OPTIMIZER_SETTINGS.
    momentum: float | None = Field(None, ge=0.0, lt=1.0)  # sgd, rmsprop
    nesterov: bool | None = None  # sgd
    betas: tuple[Beta, Beta] | None = None  # adam, adamw
    eps: float | None = Field(None, gt=0.0, le=10.0)  # adam, adamw, rmsprop, adagrad
    alpha: float | None = Field(None, ge=0.0, lt=1.0)  # rmsprop: smoothing of the squared gradient
    centered: bool | None = None  # rmsprop
    lr_decay: float | None = Field(None, ge=0.0, le=1e6)  # adagrad
    initial_accumulator_value: float | None = Field(None, ge=0.0, le=1e6)  # adagrad
    weight_decay: float = Field(0.0, ge=0.0)
    # No weight decay on norm weights and biases (the usual choice for BN/GN nets).
    decay_norm_and_bias: bool = False
    grad_clip: PositiveFloat | None = None
    # LR multipliers by module-name prefix ({backbone: 0.1}); the longest matching prefix wins.
    param_groups: dict[str, Annotated[float, Field(gt=0.0, le=MAX_LR_MULT)]] = Field(
        default_factory=dict, max_length=MAX_ITEMS
    )
    # Layer-wise LR decay: the model's stages from the head backwards get decay^1, decay^2, ...
    layer_decay: float | None = Field(None, gt=0.0, le=1.0)

    @field_validator("param_groups", mode="before")
    @classmethod
    def _prefixes(cls, groups: Any) -> Any:
        if not isinstance(groups, dict):
            return groups
        for prefix, mult in groups.items():
            if not isinstance(prefix, str) or not prefix or prefix != prefix.strip(". "):
                raise FieldError(
                    str(prefix),
                    f"{prefix!r} is not a module name prefix; give names as the model's "
                    "named_parameters() spell them (e.g. backbone, layer1, features.0)",
                )
            if isinstance(mult, bool):
                raise FieldError(prefix, f"expected a number, got {str(mult).lower()}{_BOOL_HINT}")
        return groups

    @model_validator(mode="after")
    def _settings_belong(self) -> OptimConfig:
        own = OPTIMIZER_SETTINGS[self.name]
        every = {k for settings in OPTIMIZER_SETTINGS.values() for k in settings}
        stray = [k for k in sorted(every) if getattr(self, k) is not None and k not in own]
        if stray:
            takers = sorted(n for n, s in OPTIMIZER_SETTINGS.items() if set(stray) <= set(s))
            fix = f"; or use name: {' or '.join(takers)}" if takers else ""
            raise FieldError(
                stray[0],
                f"{self.name} takes no {' or '.join(stray)}; its own settings are "
                f"{', '.join(own)} (remove {'them' if len(stray) > 1 else 'it'}{fix})",
            )
        if self.name == "sgd" and self.nesterov and self.settings()["momentum"] == 0:
            raise FieldError(
                "momentum",
                "nesterov: true needs momentum above 0; set a momentum (e.g. 0.9) "
                "or nesterov: false",
            )
        return self

    def settings(self) -> dict[str, Any]:
        """The chosen optimizer's own settings, defaults filled in (torch.optim's keywords)."""
        return {
            k: default if getattr(self, k) is None else getattr(self, k)
            for k, default in OPTIMIZER_SETTINGS[self.name].items()
        }


class ScheduleConfig(_Section):
    """Learning-rate schedule, stepped every iteration, with optional linear warmup."""

    name: str = "cosine"
    warmup_epochs: Epochs = 0.0
    warmup_factor: float = Field(0.001, gt=0.0, le=1.0)
    # step: LR multiplied by gamma at these epochs.
    milestones: list[Epochs] = Field(default_factory=list, max_length=MAX_ITEMS)
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    # cosine/linear/sgdr floor, as a fraction of the peak LR.
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)
    # sgdr: first cycle length in epochs and the growth of each next cycle.
    cycle_epochs: float = Field(1.0, gt=0.0, le=MAX_EPOCHS)
    cycle_mult: float = Field(1.0, ge=1.0, le=100.0)
    # Schedule length (1x, 2x, 6x...): scales train.epochs and the milestones, not the warmup.
    length_multiplier: float = Field(1.0, gt=0.0, le=1000.0)


class RegularizationConfig(_Section):
    """Loss-side regularisation (data-side lives in data.augment)."""

    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    mixup_alpha: float = Field(0.0, ge=0.0, le=1000.0)
    cutmix_alpha: float = Field(0.0, ge=0.0, le=1000.0)


class EarlyStoppingConfig(_Section):
    patience: int = Field(5, gt=0, le=MAX_EPOCHS)
    min_delta: float = Field(0.0, ge=0.0)


class TrainConfig(_Section):
    """The loop: length, batch, precision, evaluation and what to keep."""

    epochs: int = Field(10, gt=0, le=MAX_EPOCHS)
    # The global batch of one forward/backward pass (split over processes); bounded by
    # Recipe, which knows the image size that the memory depends on.
    batch_size: PositiveInt = 64
    # Gradient accumulation: the optimizer steps every `accumulate_steps` batches, so the
    # effective batch is batch_size x accumulate_steps (what lr_per_256 scales by).
    accumulate_steps: int = Field(1, gt=0, le=MAX_ACCUMULATE)
    # Cut each epoch short (for smoke runs and search trials on big data), in optimizer steps.
    max_steps_per_epoch: Count | None = None
    # Stop after this many optimizer steps in all (a truncated run, as a search trial is).
    # Not stretched by schedule.length_multiplier, and the LR schedule keeps its full
    # length (train.epochs x the multiplier): the run sees the start of its real schedule.
    max_steps: Count | None = None
    eval_every: int = Field(1, gt=0, le=MAX_EPOCHS)
    # Metric that picks the best checkpoint and drives early stopping / pruning, as the
    # epoch record names it: val/top1, ema/val/top1 (the EMA model's), ...
    metric: str = "val/top1"
    mode: Literal["max", "min"] = "max"
    early_stopping: EarlyStoppingConfig | None = None
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    deterministic: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    keep_last: int = Field(1, gt=0, le=MAX_KEPT)

    @field_validator("metric")
    @classmethod
    def _metric_key(cls, value: str) -> str:
        return metric_key(value)


class EmaConfig(_Section):
    """Polyak/EMA: an exponential moving average of the weights, evaluated beside the model."""

    decay: float = Field(0.999, gt=0.0, lt=1.0)
    # Warm the decay up as 1 - (1 + step)^-power (capped at `decay`), so that a
    # short run's average is not dominated by the initial weights.
    warmup: bool = True
    warmup_power: float = Field(0.75, gt=0.0, le=1.0)
    update_every: Count = 1
    # Buffers (BN statistics): "recalibrate" recomputes them on training batches
    # before each evaluation (and copies them where the model has no BN), "copy"
    # takes the model's, "ema" averages them like the weights.
    buffers: Literal["recalibrate", "copy", "ema"] = "recalibrate"
    recalibrate_batches: Count | None = 50


class SwaConfig(_Section):
    """Stochastic weight averaging: equal averaging from ``start_epoch`` on, with its own LR."""

    start_epoch: int = Field(
        ge=0, le=MAX_EPOCHS, description="the epoch SWA starts averaging at (e.g. start_epoch: 8)"
    )
    lr: PositiveFloat = Field(description="SWA's constant learning rate (e.g. lr: 0.05)")
    anneal_epochs: Epochs = 1.0
    anneal_strategy: Literal["cos", "linear"] = "cos"
    # Training batches for the BN statistics of the average (None: one whole epoch).
    recalibrate_batches: Count | None = None


class SnapshotConfig(_Section):
    """Snapshot ensembles: a snapshot at the end of every SGDR cycle (needs schedule.name: sgdr)."""

    # The last M snapshots are evaluated alone and together.
    ensemble_last: int = Field(3, gt=0, le=MAX_KEPT)
    # Snapshot files kept on disk (None: all of them).
    keep: int | None = Field(None, gt=0, le=MAX_KEPT)

    @model_validator(mode="after")
    def _keep_covers_ensemble(self) -> SnapshotConfig:
        if self.keep is not None and self.keep < self.ensemble_last:
            raise FieldError(
                "keep",
                f"keep ({self.keep}) must be at least ensemble_last ({self.ensemble_last}), "
                "or the ensemble would lose snapshot files it needs",
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
    # Update/weight ratios, gradient and weight norms per layer, every `interval` steps;
    # "auto" picks 20 to 500 so that they cost at most 0.25% of the training time.
    interval: Count | Literal["auto"] = "auto"
    ratio_bounds: tuple[PositiveFloat, PositiveFloat] = (1e-4, 1e-2)
    # Checks in a row outside ratio_bounds before a layer is warned about.
    ratio_patience: Count = 3
    # Layers whose outputs are summarised (mean, std, dead units, saturation):
    # "auto" (the activation modules), "off", or a list of module names.
    activations: Literal["auto", "off"] | Annotated[list[str], Field(max_length=MAX_ITEMS)] = "auto"
    activation_interval: Count = 100
    # Stop at a non-finite loss or gradient; record loss spikes as events.
    guards: bool = True
    # Steps between gradient checks (the loss is checked every step). 1 stops a
    # bad gradient before its step; more saves a gradient pass on models with
    # many parameters and little compute per step; "auto" picks 1 to 50 so that
    # the checks cost at most 0.25% of the training time (1 under distributed training).
    gradient_check_interval: Count | Literal["auto"] = "auto"
    spike_factor: float = Field(3.0, gt=1.0)
    # Recent losses kept to spot a spike in.
    spike_window: int = Field(50, gt=0, le=10**6)
    tensorboard: bool = True
    histograms: bool = True
    histogram_interval: Count = 500
    # The rich live view in the terminal (replaces the plain progress bar).
    live: bool = True

    @model_validator(mode="after")
    def _check_intervals(self) -> DiagnosticsConfig:
        low, high = self.ratio_bounds
        if not low < high:
            raise FieldError(
                "ratio_bounds",
                f"must be [low, high] with low < high, got [{low}, {high}]"
                + ("; swap them" if low > high else ""),
            )
        # "auto" starts at 20 and only picks cadences that divide histogram_interval.
        if self.histograms and self.histogram_interval % self.first_interval:
            raise FieldError(
                "histogram_interval",
                f"histogram_interval ({self.histogram_interval}) must be a multiple of interval "
                f"({self.interval}"
                + (", which starts at 20" if self.interval == "auto" else "")
                + "), so update histograms have an update to show",
            )
        return self

    @property
    def first_interval(self) -> int:
        """The interval measured at first: ``interval``, or where ``auto`` starts."""
        return self.interval if isinstance(self.interval, int) else AUTO_FIRST_INTERVAL


MultilabelLoss = Literal["bce", "softmax"]


class MultilabelConfig(_Section):
    """Multi-label training (``task: multilabel``): multi-hot targets, the loss and precision@k.

    ``bce`` is binary cross-entropy per class (averaged over samples and
    classes); ``softmax`` is the softmax cross-entropy against the targets
    normalised to sum to 1 (k tags: 1/k each), as Mahajan et al. train on
    hashtags.
    """

    loss: MultilabelLoss = "bce"
    # Reported as val/prec@k (k capped by the number of classes, as top5 is for classifiers).
    precision_at: list[Annotated[int, Field(gt=0, le=MAX_ITEMS)]] = Field(
        default_factory=lambda: [1, 5], min_length=1, max_length=10
    )

    @field_validator("precision_at")
    @classmethod
    def _distinct(cls, ks: list[int]) -> list[int]:
        if len(set(ks)) != len(ks):
            raise ValueError(f"each k once, got {ks}")
        return ks


TtaView = Literal["hflip", "multicrop"]


class EvalConfig(_Section):
    """Extra evaluations of the model: test-time augmentation (classification and multilabel).

    With ``tta`` set, the validation set is also scored on the average of the
    predicted probabilities over the views, reported as ``tta/val/...``
    (which ``train.metric`` may name). The views are the image itself plus,
    with ``multicrop``, its 4 corner and centre crops of ``crop_fraction`` of the
    side resized back; ``hflip`` adds the mirror image of each.
    """

    tta: list[TtaView] = Field(default_factory=list, max_length=2)
    crop_fraction: float = Field(0.875, gt=0.0, lt=1.0)

    @field_validator("tta")
    @classmethod
    def _distinct(cls, views: list[str]) -> list[str]:
        if len(set(views)) != len(views):
            raise ValueError(f"each view once, got {views}")
        return views


#: What a phase may change: the settings that are not built into the data, the loaders,
#: the model's layers or the hooks, which exist once for the whole run.
PHASE_SECTIONS = ("optim", "schedule", "regularization")
PHASE_FIELDS = ("model.freeze_to",)
#: ... except these, which apply to the run as a whole.
NOT_IN_PHASES = ("schedule.length_multiplier",)
PHASE_RULE = (
    "a phase may set model.freeze_to, optim.*, schedule.* (but length_multiplier) "
    "and regularization.*"
)
MAX_PHASES = 100


def _phase_keys() -> list[str]:
    """Every ``section.field`` a phase may set (for "did you mean")."""
    keys = list(PHASE_FIELDS)
    for section in PHASE_SECTIONS:
        owner = Recipe.model_fields[section].annotation
        assert isinstance(owner, type) and issubclass(owner, Section)
        keys += [f"{section}.{f}" for f in owner.model_fields]
    return [k for k in keys if k not in NOT_IN_PHASES]


def _check_phase_key(key: str) -> None:
    """A key of a phase's ``set``: a dotted field that may change between phases."""
    parts = key.split(".")
    if len(parts) < 2 or not all(parts):
        section = Recipe.model_fields.get(key)
        if section is not None and key in PHASE_SECTIONS:
            raise FieldError(
                key, f"give the fields of '{key}' one by one ({key}.lr: ...), not the whole section"
            )
        if section is None:
            raise FieldError(key, f"unknown field{did_you_mean(key, _phase_keys())}; {PHASE_RULE}")
        raise FieldError(key, f"'{key}' cannot change between phases; {PHASE_RULE}")
    head = ".".join(parts[:2])
    owner: Any = (
        Recipe.model_fields[parts[0]].annotation if parts[0] in Recipe.model_fields else None
    )
    known = (
        isinstance(owner, type) and issubclass(owner, Section) and parts[1] in owner.model_fields
    )
    changeable = head in PHASE_FIELDS or (parts[0] in PHASE_SECTIONS and head not in NOT_IN_PHASES)
    if changeable and known:
        return
    if not known:
        raise FieldError(key, f"unknown field{did_you_mean(head, _phase_keys())}; {PHASE_RULE}")
    raise FieldError(
        key,
        f"'{head}' cannot change between phases: it is built once for the whole run "
        f"(data, loaders, the model's layers, the loop and its hooks); {PHASE_RULE}",
    )


class PhaseConfig(_Section):
    """One phase of a run (``phases:``): the recipe with ``set`` applied, for ``epochs`` epochs.

    ``set`` maps dotted fields to values, each replacing the recipe's own for
    this phase only (phases do not inherit from each other). Each phase starts
    its own schedule (warmup included) over its own epochs, with an optimizer
    built for the parameters it trains.
    """

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="the phase's name (e.g. name: probe)",
    )
    epochs: int = Field(gt=0, le=MAX_EPOCHS, description="the phase's epochs (e.g. epochs: 5)")
    set: dict[str, Any] = Field(default_factory=dict, max_length=MAX_ITEMS)

    @field_validator("set")
    @classmethod
    def _changeable(cls, values: dict[str, Any]) -> dict[str, Any]:
        for key in values:
            _check_phase_key(key)
        return values


class Recipe(_Section):
    """A whole training setup. See ``recipes/digits.yaml`` for an example."""

    name: str = Field("run", min_length=1, max_length=200)
    task: Literal["classification", "detection", "multilabel"] = "classification"
    seed: int = Field(0, ge=0, le=MAX_SEED)
    output_dir: str = "runs"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    regularization: RegularizationConfig = Field(default_factory=RegularizationConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    averaging: AveragingConfig = Field(default_factory=AveragingConfig)
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)
    multilabel: MultilabelConfig = Field(default_factory=MultilabelConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    # Phases of the run (a linear probe, then fine-tuning): see PhaseConfig and docs/transfer.md.
    phases: list[PhaseConfig] = Field(default_factory=list, max_length=MAX_PHASES)

    @model_validator(mode="after")
    def _classes_need_labels(self) -> Recipe:
        if self.data.classes is not None and self.task != "classification":
            raise FieldError(
                "data.classes",
                f"picks classes by each item's class index, which a {self.task} dataset does not "
                "have; remove it (it is for task: classification)",
            )
        return self

    @model_validator(mode="after")
    def _phases_fit(self) -> Recipe:
        if not self.phases:
            return self
        total = sum(p.epochs for p in self.phases)
        parts = " + ".join(f"{p.name} {p.epochs}" for p in self.phases)
        if "epochs" not in self.train.model_fields_set:
            if total > MAX_EPOCHS:
                raise FieldError("phases", f"{parts} = {total} epochs; at most {MAX_EPOCHS}")
            self.train.epochs = total  # left out: the sum of the phases
        elif self.train.epochs != total:
            raise FieldError(
                "phases",
                f"phases whose epochs do not add up: {parts} = {total}, but train.epochs is "
                f"{self.train.epochs}; set train.epochs: {total}, or leave it out (it is then "
                "the sum of the phases)",
            )
        names = [p.name for p in self.phases]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise FieldError(f"phases.{i}.name", f"{name!r} names two phases; name each once")
        if self.schedule.length_multiplier != 1.0:
            raise FieldError(
                "schedule.length_multiplier",
                "does not apply to a recipe with phases: each phase has its own schedule over "
                "its own epochs; lengthen the phases instead",
            )
        avg = self.averaging
        if avg.snapshots is not None:
            raise FieldError(
                "averaging.snapshots",
                "snapshots follow one SGDR schedule over the whole run, and phases restart the "
                "schedule at each phase; remove averaging.snapshots or the phases",
            )
        last_start = total - self.phases[-1].epochs
        if avg.swa is not None and avg.swa.start_epoch < last_start:
            raise FieldError(
                "averaging.swa.start_epoch",
                f"value {avg.swa.start_epoch} is not allowed: SWA holds the LR of the last "
                f"phase ({self.phases[-1].name!r}, from epoch {last_start}); start it there or later",
            )
        for i in range(len(self.phases)):
            self.phase_recipe(i)  # every phase's settings validate as a recipe
        return self

    def phase_recipe(self, index: int) -> Recipe:
        """The recipe phase ``index`` trains with: this one with the phase's ``set`` applied,
        ``train.epochs`` the phase's, and no phases of its own.

        Example:
            >>> recipe.phase_recipe(1).optim.lr  # doctest: +SKIP
            0.01
        """
        from pydantic import ValidationError

        from ._errors import format_validation_error

        phase = self.phases[index]
        data = self.model_dump(exclude={"phases"})
        for key, value in phase.set.items():
            node = data
            *path, leaf = key.split(".")
            for part in path:
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
            node[leaf] = value
        data["train"]["epochs"] = phase.epochs
        if self.task == "detection" and data["model"]["freeze_to"] != self.model.freeze_to:
            raise FieldError(
                f"phases.{index}.set.model.freeze_to",
                "phases change the frozen stages of classifiers only; a detector's phases may "
                f"set optim.*, schedule.* and regularization.* (phase {phase.name!r})",
            )
        try:
            return Recipe.model_validate(data)
        except ValidationError as exc:
            err = format_validation_error(exc, Recipe, file=None)
            field = err.field or ""
            if any(field == k or field.startswith(k + ".") for k in phase.set):
                raise FieldError(
                    f"phases.{index}.set.{field}", f"{err.message} (phase {phase.name!r})"
                ) from None
            head = ".".join(field.split(".")[:2])
            fix = ""
            if head in _phase_keys():  # a value of the recipe's that the phase's settings exclude
                fix = f"; the phase can set {head} too (null drops the recipe's value)"
            raise FieldError(
                f"phases.{index}.set",
                f"phase {phase.name!r} on top of the recipe: {field}: {err.message}{fix}",
            ) from None

    @model_validator(mode="after")
    def _task_sections(self) -> Recipe:
        # A section of another task would be ignored without a word.
        if self.task != "multilabel" and self.multilabel != MultilabelConfig():
            raise FieldError(
                "multilabel",
                f"applies to task: multilabel, and this recipe's task is {self.task}; "
                "remove the section or set task: multilabel",
            )
        if self.task == "detection" and self.eval.tta:
            raise FieldError(
                "eval.tta",
                "test-time augmentation averages class probabilities, which a detector does "
                "not give; remove eval.tta (it is for classification and multilabel recipes)",
            )
        if self.task == "multilabel":
            reg = self.regularization
            for name in ("label_smoothing", "mixup_alpha", "cutmix_alpha"):
                if getattr(reg, name) > 0:
                    raise FieldError(
                        f"regularization.{name}",
                        "applies to task: classification (class-index targets); "
                        "set it to 0 for task: multilabel",
                    )
        return self

    @model_validator(mode="after")
    def _batch_fits(self) -> Recipe:
        size, batch = self.data.image_size, self.train.batch_size
        need = human_bytes(batch_bytes(batch, size))
        if size > MAX_IMAGE_SIZE:
            raise FieldError(
                "data.image_size",
                f"image_size {size} would need ~{need} for one batch of {batch} images "
                f"(3 x {size} x {size} float32 each); at most {MAX_IMAGE_SIZE} allowed",
            )
        if batch > MAX_BATCH_SIZE:
            raise FieldError(
                "train.batch_size",
                f"batch_size {batch} would need ~{need} for one batch of {size}x{size} images; "
                f"at most {MAX_BATCH_SIZE} allowed",
            )
        if batch_bytes(batch, size) > MAX_BATCH_BYTES:
            raise FieldError(
                "train.batch_size",
                f"batch_size {batch} of {size}x{size} images would need ~{need} for the input "
                f"batch alone; at most {human_bytes(MAX_BATCH_BYTES)}: lower batch_size or "
                "data.image_size",
            )
        return self
