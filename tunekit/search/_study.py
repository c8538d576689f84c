"""The study file: which recipe, which metric, the search space and the stages.

A study is named by its file in ``studies/`` (``--study digits``) or by a path.
Shapes, ranges and names are checked here so that a bad file fails in one line
before any trial runs; whether the sampled values make a valid recipe is
checked by :func:`tunekit.search.check_study` against the recipe schema.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from tunekit.config import (
    MAX_COUNT,
    MAX_EPOCHS,
    FieldError,
    Section,
    apply_overrides,
    metric_key,
    parse_override,
    read_yaml,
    validate,
)
from tunekit.errors import ConfigError, did_you_mean

# Upper bounds, generous for any real study (see tunekit/config/_recipe.py for the recipe's).
MAX_TRIALS = 1_000_000
MAX_STAGES = 100
MAX_PARAMS = 1000
MAX_CHOICES = 10_000
MAX_CONDITIONS = 16
MAX_OVERRIDES = 1000
MAX_WORKERS = 1024
#: Stage k's sampler is seeded with seed * 1000 + k, and numpy takes seeds below 2**32.
MAX_SEED = 4_000_000
_DAY = 86_400.0
#: An or_zero parameter's switch is sampled as "<name>:zero" (see tunekit.search._space).
ZERO_SUFFIX = ":zero"
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


Role = Literal["scientific", "nuisance", "fixed"]
#: The samplers of tunekit.search._builders.SAMPLERS.
SamplerName = Literal["qmc", "random", "tpe", "grid"]
#: The pruners of tunekit.search._builders.PRUNERS.
PrunerName = Literal["none", "median", "asha", "hyperband"]


class ParamSpec(Section):
    """One hyperparameter: a recipe field (``optim.lr``) and where its values come from.

    Roles follow the tuning playbook: ``scientific`` parameters are what the
    study measures (its summary gives the best trial per value), ``nuisance``
    parameters are optimised so the comparison is fair, ``fixed`` ones are
    held at ``value`` for the whole study.

    ``when`` makes a parameter conditional: ``{optim.name: rmsprop}`` (or a
    list of values) samples it, or for a fixed one sets it, only in trials
    where that categorical parameter took one of those values, as Optuna's
    define-by-run spaces do (``optim.alpha`` only for RMSprop).

    ``or_zero`` puts 0 beside a log range (``optim.weight_decay``: off, or
    log-uniform between low and high): the trial samples a switch
    ``<name>:zero`` first and the range only when the switch is off.

    ``choices`` given as a mapping makes a section swap: the parameter's name is
    a free word (``init``), each choice names recipe overrides
    (``{scratch: {model.weights: null}, pretrained: {model.weights: w.pt}}``),
    and a trial applies the overrides of the choice it drew.
    """

    type: Literal["log_uniform", "uniform", "int", "categorical"] = "uniform"
    role: Role = "nuisance"
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: list[Any] | dict[str, dict[str, Any]] | None = Field(None, max_length=MAX_CHOICES)
    value: Any = None
    # 0 or a draw from the log range: a switch parameter, then the range (see the class doc).
    or_zero: bool = False
    # Refinement never widens a range past these (e.g. momentum < 1).
    min: float | None = None
    max: float | None = None
    # Sampled (or set, when fixed) only where these categorical parameters took these values.
    when: dict[str, list[Any]] | None = Field(None, min_length=1, max_length=MAX_CONDITIONS)

    @model_validator(mode="before")
    @classmethod
    def _choices_mean_categorical(cls, data: Any) -> Any:
        # {choices: [...]} or a swap's {choices: {...}} without a type can only be categorical.
        if isinstance(data, dict) and "choices" in data and "type" not in data:
            return {**data, "type": "categorical"}
        return data

    @property
    def swaps(self) -> dict[str, dict[str, Any]] | None:
        """A section swap's overrides per choice (None for a parameter that is a recipe field)."""
        return self.choices if isinstance(self.choices, dict) else None

    @field_validator("when", mode="before")
    @classmethod
    def _values_as_lists(cls, when: Any) -> Any:
        if not isinstance(when, dict):
            return when
        return {k: v if isinstance(v, list) else [v] for k, v in when.items()}

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.swaps is not None:
            self._check_swaps(self.swaps)
        if self.or_zero and (self.type != "log_uniform" or self.role == "fixed"):
            what = "a fixed parameter" if self.role == "fixed" else f"a {self.type} parameter"
            raise FieldError(
                "or_zero",
                f"or_zero puts 0 beside a log_uniform range, and this is {what}; use "
                "type: log_uniform (a uniform range reaches 0 with low: 0)",
            )
        if self.or_zero and self.low is not None and self.low <= 0:
            raise FieldError(
                "low",
                f"with or_zero, low must be above 0, got {self.low}: the 0 is the switch's own "
                "value and the range is log-uniform (e.g. low: 1e-6)",
            )
        if self.role == "fixed":
            if self.value is None:
                raise ValueError("a fixed parameter needs 'value'")
            if self.swaps is not None and self.value not in self.swaps:
                raise FieldError(
                    "value",
                    f"{self.value!r} is not one of the swap's choices "
                    f"({', '.join(repr(c) for c in self.swaps)})",
                )
            return self
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            if self.swaps is None and len({repr(c) for c in self.choices}) != len(self.choices):
                raise ValueError(f"choices {self.choices} repeat a value; list each once")
            return self
        if self.swaps is not None:
            raise FieldError(
                "type",
                f"choices given as a mapping make a section swap, which is categorical, not "
                f"{self.type}; remove 'type' or write type: categorical",
            )
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs 'low' and 'high'")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("'low' and 'high' must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"inverted range: low {self.low} > high {self.high}; swap them")
        if self.low == self.high:
            raise ValueError(
                f"empty range: low and high are both {self.low}; widen it, or hold the value "
                f"with role: fixed and value: {self.low}"
            )
        if self.type == "log_uniform" and self.low <= 0:
            raise ValueError(
                f"a log_uniform range must be above 0, got low {self.low}; "
                "use a small positive low (e.g. 1e-6) or type: uniform"
            )
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"an int range needs whole numbers, got [{self.low}, {self.high}]")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be > 0, got {self.step}")
        if self.min is not None and self.low < self.min:
            raise ValueError(f"low {self.low} is below the hard limit min {self.min}")
        if self.max is not None and self.high > self.max:
            raise ValueError(f"high {self.high} is above the hard limit max {self.max}")
        return self

    @staticmethod
    def _check_swaps(swaps: dict[str, dict[str, Any]]) -> None:
        """Each choice's overrides are recipe paths (``model.weights``); check_study checks the values."""
        for choice, overrides in swaps.items():
            for key in overrides:
                if not _DOTTED.match(key):
                    raise FieldError(
                        f"choices.{choice}",
                        f"{key!r} is not a recipe field path; write section.field "
                        "(e.g. model.weights: null)",
                    )

    def grid_problem(self) -> str | None:
        """Why a grid cannot take this parameter (a range without a finite set of values), or None."""
        if self.role == "fixed" or self.type in ("categorical", "int"):
            return None
        if self.or_zero:
            return "an or_zero log range"
        if self.type == "log_uniform":
            return "a log_uniform range"
        return None if self.step is not None else "a uniform range without a step"


class PrunerSpec(Section):
    """A pruner for one stage: Optuna's median, successive halving (ASHA) or Hyperband."""

    name: PrunerName = "median"
    # What the pruner compares (the study's metric unless given). With a schedule that
    # decays over the trial, a high LR looks worst until the LR comes down, so early
    # rungs prune the configurations that end best; "ema/val/top1" (with averaging.ema
    # in the stage's recipe) ranks trials early much as they will end.
    metric: str | None = None

    @field_validator("metric")
    @classmethod
    def _metric_key(cls, value: str | None) -> str | None:
        return None if value is None else metric_key(value)

    # Trials report at their global optimizer step, so these count optimizer steps
    # (what Optuna's trial.report(value, step) takes): trials meet at equal iterations.
    # median
    n_startup_trials: int = Field(default=3, ge=0, le=MAX_TRIALS)
    n_warmup_steps: int = Field(default=0, ge=0, le=MAX_COUNT)
    # asha / hyperband
    min_resource: int = Field(default=1, gt=0, le=MAX_COUNT)
    reduction_factor: int = Field(default=3, le=100)
    # hyperband: the stage's steps unless given (without them, Optuna's "auto": the
    # steps of the first trial that finishes).
    max_resource: int | None = Field(default=None, gt=0, le=MAX_COUNT)

    @model_validator(mode="after")
    def _check(self) -> PrunerSpec:
        if self.name in ("asha", "hyperband") and self.reduction_factor < 2:
            raise FieldError(
                "reduction_factor",
                f"reduction_factor must be 2 or more, got {self.reduction_factor} "
                "(each rung keeps 1 in reduction_factor trials)",
            )
        if self.max_resource is not None and self.max_resource < self.min_resource:
            raise FieldError(
                "max_resource",
                f"max_resource {self.max_resource} is below min_resource {self.min_resource}",
            )
        return self


class RefineSpec(Section):
    """How a stage narrows the previous stage's ranges around its best trials."""

    top_k: int = Field(default=3, gt=0, le=1000)
    # Padding around the top-k values, as a fraction of their spread (log space for log ranges).
    margin: float = Field(default=0.25, ge=0.0, le=100.0)
    # A best value within this fraction of the range's width from an edge is "at the edge".
    edge: float = Field(default=0.1, ge=0.0, lt=0.5)
    # When at the edge, the range is widened past it by this fraction of its width.
    widen: float = Field(default=0.5, gt=0.0, le=100.0)


MAX_REPEAT_SEEDS = 1000


class RepeatSpec(Section):
    """A repeat stage: each cell's best setting trained again with ``seeds`` seeds.

    The recipe's top-level ``seed`` takes the values ``first_seed``,
    ``first_seed + 1``, ... (distinct, the same on every worker and every rerun).
    """

    seeds: int = Field(le=MAX_REPEAT_SEEDS)
    first_seed: int = Field(default=1, ge=0, le=2**31 - MAX_REPEAT_SEEDS)

    @model_validator(mode="after")
    def _check(self) -> RepeatSpec:
        if self.seeds < 2:
            raise FieldError(
                "seeds",
                f"a repeat needs 2 or more seeds to measure a spread, got {self.seeds}; "
                "use e.g. repeat: {seeds: 5}",
            )
        return self

    def seed_values(self) -> list[int]:
        return [self.first_seed + i for i in range(self.seeds)]


#: What a repeat stage takes from the stage it repeats, so it may not set them itself.
_REPEAT_TAKES = ("sampler", "pruner", "refine", "trials", "epochs", "set")


class StageSpec(Section):
    """One round of the search: a sampler, a number of trials of a fixed length, a pruner.

    ``trials`` is per cell: a study with scientific parameters runs it for each
    of their values (or combinations). A stage with ``repeat`` samples nothing:
    it trains each cell's best setting again with several seeds (see
    :class:`RepeatSpec` and ``docs/search.md``).
    """

    name: str = Field(
        pattern=r"^[A-Za-z0-9_-]+$",
        max_length=100,
        description="every stage needs a name, which --set stages.NAME.field=... uses "
        "(e.g. name: coarse)",
    )
    sampler: SamplerName = "random"
    # A grid stage left without a number runs every point of its grid (see grid_trials).
    trials: int = Field(default=10, gt=0, le=MAX_TRIALS)
    # The trial's train.epochs: the length of its LR schedule (x schedule.length_multiplier).
    epochs: int = Field(default=2, gt=0, le=MAX_EPOCHS)
    # A budget of optimizer steps (train.max_steps), the same for every trial whatever its
    # schedule length: the trial stops there, partway through its full-length schedule,
    # which is the recipe's train.epochs unless the stage gives epochs too.
    steps: int | None = Field(default=None, gt=0, le=MAX_COUNT)
    pruner: PrunerSpec = Field(default_factory=lambda: PrunerSpec(name="none"))
    # Narrow the previous stage's ranges around its top-k (absent on the first stage).
    refine: RefineSpec | None = None
    # Extra recipe overrides for this stage only (e.g. a constant LR for longer training).
    set: list[str] = Field(default_factory=list, max_length=MAX_OVERRIDES)
    # Run the previous stage's best parameters first when this stage trains differently
    # (other epochs or set): a fine stage starts from what worked.
    seed_best: bool = True
    # Train each cell's best setting again with several seeds (no sampling, no pruning).
    repeat: RepeatSpec | None = None

    @field_validator("set")
    @classmethod
    def _check_set(cls, overrides: list[str]) -> list[str]:
        return _check_overrides(overrides)

    @model_validator(mode="after")
    def _check_grid(self) -> StageSpec:
        if self.sampler == "grid" and self.refine is not None:
            raise FieldError(
                "refine",
                f"stage {self.name!r} is a grid, which runs every point of its space; remove "
                "its 'refine' (refine a random, qmc or tpe stage instead)",
            )
        return self

    @property
    def trials_given(self) -> bool:
        """Whether the study file (or --set) gave ``trials``; a grid stage's default is its size."""
        return "trials" in self.model_fields_set

    @model_validator(mode="after")
    def _check_repeat(self) -> StageSpec:
        if self.repeat is None:
            return self
        for name in _REPEAT_TAKES:
            if name in self.model_fields_set:
                raise FieldError(
                    name,
                    f"a repeat stage trains each cell's best setting again as the stage it "
                    f"came from did, so it takes no {name!r} of its own; remove it",
                )
        return self

    @property
    def is_repeat(self) -> bool:
        return self.repeat is not None


class RoundsSpec(Section):
    """Further rounds after the listed stages: the last stage again, refined each time."""

    extra: int = Field(default=0, ge=0, le=1000)
    # Stop starting rounds when the study holds this many trials or has run this long.
    max_trials: int | None = Field(default=None, gt=0, le=MAX_TRIALS)
    time_budget_s: float | None = Field(default=None, gt=0, le=3650 * _DAY)


class LivenessSpec(Section):
    """How soon a killed worker's trial is failed and retried."""

    heartbeat_s: float = Field(default=2.0, gt=0, le=_DAY)
    grace_s: float = Field(default=30.0, gt=0, le=7 * _DAY)
    max_retry: int = Field(default=2, ge=0, le=100)

    @model_validator(mode="after")
    def _check(self) -> LivenessSpec:
        if self.grace_s <= self.heartbeat_s:
            raise FieldError(
                "grace_s",
                f"grace_s {self.grace_s} must be longer than heartbeat_s {self.heartbeat_s}, "
                "or a live worker's trial would be failed between two heartbeats",
            )
        return self


class Study(Section):
    """A whole search. See ``studies/digits.yaml`` for an example.

    Its trials train ``recipe``, or call the function ``objective`` names (``pkg.mod:fn``);
    in an objective study the space's names are free words, the function's ``params`` keys.
    """

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$",
        max_length=100,
        description="a study needs a name, which names its storage and directory (e.g. name: digits)",
    )
    # What a trial runs: a recipe (a path or a name in recipes/), or a Python function
    # "pkg.mod:fn" called with the trial's values (tunekit.search.ObjectiveTrial); one of the two.
    recipe: str | None = None
    objective: str | None = None
    # Recipe overrides applied to every trial (e.g. a smaller model for a quick study).
    set: list[str] = Field(default_factory=list, max_length=MAX_OVERRIDES)
    metric: str = "val/top1"
    direction: Literal["maximize", "minimize"] = "maximize"

    @field_validator("metric")
    @classmethod
    def _metric_key(cls, value: str) -> str:
        return metric_key(value)

    space: dict[str, ParamSpec] = Field(
        min_length=1,
        max_length=MAX_PARAMS,
        description="a study needs a search space, recipe fields and their ranges "
        "(e.g. space: {optim.lr: {type: log_uniform, low: 0.01, high: 1}})",
    )
    stages: list[StageSpec] = Field(
        min_length=1,
        max_length=MAX_STAGES,
        description="a study needs at least one stage (e.g. stages: [{name: coarse, trials: 16}])",
    )
    rounds: RoundsSpec = Field(default_factory=lambda: RoundsSpec())
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    # Processes (GPUs on a GPU machine, gloo processes on a CPU one) that train one trial.
    # auto: every visible GPU shared out among the workers; one process without GPUs.
    gpus_per_trial: Annotated[int, Field(gt=0, le=MAX_WORKERS)] | Literal["auto"] = "auto"
    workers: int = Field(default=1, gt=0, le=MAX_WORKERS)
    liveness: LivenessSpec = Field(default_factory=lambda: LivenessSpec())
    # Recipe overrides from the command line (--set recipe.a.b=v), applied after the stages' own.
    overrides: list[str] = Field(default_factory=list, max_length=MAX_OVERRIDES)
    # Where the study's directory goes when --out is not given.
    output_dir: str = "runs/search"

    @field_validator("name")
    @classmethod
    def _not_a_parent(cls, name: str) -> str:
        if not name.strip("."):
            raise ValueError(
                f"{name!r} would name the output directory itself or its parent; "
                "use a word (e.g. name: digits)"
            )
        return name

    @field_validator("set", "overrides")
    @classmethod
    def _check_set(cls, overrides: list[str]) -> list[str]:
        return _check_overrides(overrides)

    @field_validator("objective")
    @classmethod
    def _module_and_name(cls, ref: str | None) -> str | None:
        if ref is None:
            return ref
        module, colon, name = ref.partition(":")
        if not colon or not module.strip() or not name.strip():
            raise ValueError(
                f'{ref!r} is not a function\'s place; write "module:function" '
                '(e.g. objective: "mypkg.train:objective")'
            )
        return ref

    @model_validator(mode="after")
    def _recipe_or_objective(self) -> Study:
        if self.recipe is not None and self.objective is not None:
            raise FieldError(
                "objective",
                f"the study names both recipe {self.recipe!r} and objective "
                f"{self.objective!r}; a trial runs one of them, so remove the other",
            )
        if self.recipe is None and self.objective is None:
            raise FieldError(
                "recipe",
                "a study needs what its trials run: a recipe, a path or a name in recipes/ "
                '(e.g. recipe: digits), or a Python function (e.g. objective: "mypkg.train:fn")',
            )
        if self.objective is None:
            return self
        # A function gets its values as arguments; recipe overrides have nothing to override.
        places = [("set", self.set)] + [(f"stages.{s.name}.set", s.set) for s in self.stages]
        for field, overrides in places:
            if overrides:
                raise FieldError(
                    field,
                    f"{overrides[0]!r} overrides a recipe field, and this study runs the "
                    f"Python objective {self.objective!r}; give the value in the space "
                    "(role: fixed) instead",
                )
        for stage in self.stages:
            if stage.pruner.metric is not None:
                raise FieldError(
                    f"stages.{stage.name}.pruner.metric",
                    f"the pruner compares what the objective reports (trial.report), so "
                    f"{stage.pruner.metric!r} has no place here; remove pruner.metric",
                )
        if isinstance(self.gpus_per_trial, int) and self.gpus_per_trial > 1:
            raise FieldError(
                "gpus_per_trial",
                f"value {self.gpus_per_trial} is not allowed: the objective "
                f"{self.objective!r} runs in its worker's process, one per trial; use "
                "gpus_per_trial: 1 (or auto), or run DDP inside the function",
            )
        return self

    @field_validator("stages")
    @classmethod
    def _check_stages(cls, stages: list[StageSpec]) -> list[StageSpec]:
        first: dict[str, int] = {}
        for i, stage in enumerate(stages):
            if stage.name in first:
                raise FieldError(
                    f"{i}.name",
                    f"stage {i} is named {stage.name!r} like stage {first[stage.name]}; "
                    "give each stage its own name",
                )
            first[stage.name] = i
        if stages and stages[0].repeat is not None:
            raise FieldError(
                "0.repeat",
                "the first stage has no earlier best setting to repeat; put a searching "
                "stage before it (e.g. stages: [{name: coarse, trials: 8}, "
                "{name: final, repeat: {seeds: 5}}])",
            )
        if stages and stages[0].refine is not None:
            raise FieldError(
                "0.refine",
                "the first stage has no earlier stage to refine; remove its 'refine' "
                "(or put a stage before it)",
            )
        return stages

    @field_validator("space")
    @classmethod
    def _check_space(cls, space: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
        if space and not any(p.role != "fixed" for p in space.values()):
            raise ValueError(
                "every parameter is fixed, so there is nothing to search; "
                "give at least one a range (role: nuisance or scientific)"
            )
        for name, spec in space.items():
            if ":" in name:
                # "<name>:zero" is an or_zero parameter's switch; no recipe field has a colon.
                raise FieldError(name, f"{name!r} has a ':'; name a recipe field or a word")
            _check_scientific(name, spec)
            _check_condition(name, spec, space)
        return space

    @model_validator(mode="after")
    def _check_grids(self) -> Study:
        for i, stage in enumerate(self.stages):
            if stage.sampler != "grid":
                continue
            for name, spec in self.space.items():
                problem = spec.grid_problem()
                if problem is not None:
                    raise FieldError(
                        f"stages.{i}.sampler",
                        f"grid with a range: stage {stage.name!r} is a grid and space parameter "
                        f"{name!r} is {problem}, which has no finite set of points; give it a "
                        "step (type: uniform), list its values (type: categorical, choices: "
                        "[...]) or use sampler random, qmc or tpe",
                    )
            earlier = [s.name for s in self.stages[:i] if s.refine is not None]
            if earlier:
                raise FieldError(
                    f"stages.{i}.sampler",
                    f"stage {stage.name!r} is a grid, which runs the study's space as written, "
                    f"after stage {earlier[0]!r} refined it; put the grid stage before any "
                    "refining stage",
                )
        if self.rounds.extra and self.stages[-1].sampler == "grid":
            raise FieldError(
                "rounds.extra",
                f"further rounds refine the last stage, and {self.stages[-1].name!r} is a grid; "
                "end with a random, qmc or tpe stage, or set rounds.extra: 0",
            )
        return self

    @model_validator(mode="after")
    def _check_rounds(self) -> Study:
        if self.rounds.extra and self.stages[-1].repeat is not None:
            raise FieldError(
                "rounds.extra",
                f"further rounds repeat the last stage, and {self.stages[-1].name!r} is a "
                "repeat stage; set rounds.extra to 0 or end the stages with a searching one",
            )
        return self

    @property
    def mode(self) -> str:
        return "max" if self.direction == "maximize" else "min"

    @property
    def trial_gpus(self) -> int:
        """Processes a trial trains on: ``gpus_per_trial``, or 1 while ``auto`` is unresolved.

        ``tunekit.search`` resolves ``auto`` when it prepares a search (see ``resolve_gpus``).
        """
        return self.gpus_per_trial if isinstance(self.gpus_per_trial, int) else 1


def _check_scientific(name: str, spec: ParamSpec) -> None:
    """A scientific parameter lists its values: each one is a cell tuned on its own."""
    if spec.role != "scientific":
        return
    if spec.type != "categorical":
        low, high = spec.low, spec.high
        raise FieldError(
            f"{name}.type",
            f"a scientific parameter must be categorical, got type {spec.type}: each of its "
            f"values gets its own tuning, so list them (e.g. {{type: categorical, choices: "
            f"[{low}, {high}], role: scientific}}) or make it a nuisance parameter",
        )
    if spec.when is not None:
        raise FieldError(
            f"{name}.when",
            "a scientific parameter is compared in every trial, so it cannot have a condition; "
            "remove its 'when'",
        )


def _check_condition(name: str, spec: ParamSpec, space: dict[str, ParamSpec]) -> None:
    """A ``when`` names sampled categorical parameters without conditions, and their choices."""
    for key, values in (spec.when or {}).items():
        field = f"{name}.when.{key}"
        on = space.get(key)
        sampled = {n: p for n, p in space.items() if p.role != "fixed" and p.type == "categorical"}
        if key == name or on is None or on.role == "fixed" or on.type != "categorical":
            what = (
                "the parameter itself"
                if key == name
                else "no parameter of the space"
                if on is None
                else "a fixed parameter"
                if on.role == "fixed"
                else f"a {on.type} parameter"
            )
            raise FieldError(
                field,
                f"a condition needs a sampled categorical parameter of the space, and {key!r} "
                f"is {what}{did_you_mean(key, list(sampled)) if on is None else ''}; "
                f"the categorical ones are {', '.join(sampled) or 'none'}",
            )
        if on.when is not None:
            raise FieldError(
                field,
                f"{key!r} has a condition of its own; a condition may only name an "
                "unconditional parameter",
            )
        assert on.choices is not None
        missing = [v for v in values if v not in on.choices]
        if missing:
            raise FieldError(
                field,
                f"{', '.join(repr(v) for v in missing)} {'is' if len(missing) == 1 else 'are'} "
                f"not among {key}'s choices ({', '.join(repr(c) for c in on.choices)})",
            )


def _check_overrides(overrides: list[str]) -> list[str]:
    """Each ``a.b=value`` is checked here, so a bad one names its place in the study file."""
    for i, text in enumerate(overrides):
        try:
            parse_override(text)
        except ConfigError as exc:
            raise FieldError(str(i), exc.message) from None
    return overrides


def find_study_file(name_or_path: str) -> Path:
    """``digits`` -> ``studies/digits.yaml`` (here, then next to the package); a path as given."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        if not path.exists():  # a directory or an unreadable file is read_yaml's to explain
            raise ConfigError(f"no such study file (looked at {path.resolve()})", field="--study")
        return path
    candidates = [
        Path("studies") / f"{name_or_path}.yaml",
        _repo_root() / "studies" / f"{name_or_path}.yaml",
    ]
    for c in candidates:
        if c.is_file():
            return c
    known = sorted(
        {p.stem for d in {c.parent for c in candidates} if d.is_dir() for p in d.glob("*.yaml")}
    )
    raise ConfigError(
        f"no study named {name_or_path!r}{did_you_mean(name_or_path, known)}; "
        f"known studies: {', '.join(known) or 'none'} (or pass a path to a study YAML)",
        field="--study",
    )


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def resolve_recipe_path(recipe: str, study_file: Path) -> Path:
    """A recipe as named in a study: a path (cwd, then the study's folder's parent) or a name in recipes/."""
    given = Path(recipe)
    candidates = [given, study_file.parent / given, study_file.parent.parent / given]
    if given.suffix not in (".yaml", ".yml"):
        candidates += [
            Path("recipes") / f"{recipe}.yaml",
            _repo_root() / "recipes" / f"{recipe}.yaml",
        ]
    candidates.append(_repo_root() / given)
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(
        f"unknown recipe {recipe!r}: no such file (looked at {given.resolve()} and in recipes/)",
        file=str(study_file),
        field="recipe",
    )


def load_study(
    name_or_path: str, overrides: list[str] | None = None, *, objective: str | None = None
) -> tuple[Study, Path]:
    """Loads a study by name or path, with ``--set`` overrides.

    Returns the validated study and its file. ``recipe.a.b=v`` overrides go to
    every trial's recipe; ``stages.NAME.field=v`` overrides one stage (by its
    name); anything else overrides a study field (``workers=2``). ``objective``
    names a function passed in by the caller (``tunekit.search.run(...,
    objective=fn)``): a study file without ``objective:`` takes it.

    Example:
        >>> study, path = load_study("digits", ["stages.coarse.trials=4"])  # doctest: +SKIP
    """
    path = find_study_file(name_or_path)
    file = str(path)
    data = read_yaml(path, example="studies/digits.yaml")
    if objective is not None and data.get("objective") is None:
        data["objective"] = objective
    overrides = overrides or []
    study_over = [o for o in overrides if not o.startswith("recipe.")]
    recipe_over = [o[len("recipe.") :] for o in overrides if o.startswith("recipe.")]
    stages = data.get("stages")
    names: list[str] = []
    by_name = isinstance(stages, list) and all(isinstance(s, dict) and "name" in s for s in stages)
    if by_name and isinstance(stages, list):
        # Stages are a list in the file and addressed by name on the command line; a name
        # used twice would make one stage of two here, so it is refused before that.
        names = [str(s["name"]) for s in stages]
        for i, name in enumerate(names):
            if names.index(name) != i:
                raise ConfigError(
                    f"stage {i} is named {name!r} like stage {names.index(name)}; give each "
                    "stage its own name (--set stages.NAME.field=... picks a stage by its name)",
                    file=file,
                    field=f"stages.{i}.name",
                )
        _check_stage_overrides(study_over, names, file)
        data["stages"] = dict(zip(names, stages))
    try:
        data = apply_overrides(data, study_over)
    except ConfigError as exc:
        raise ConfigError(exc.message, file=file, field=exc.field) from None
    if by_name:
        data["stages"] = list(data["stages"].values())
    try:
        study = validate(Study, data, file=file)
    except ConfigError as exc:
        raise ConfigError(exc.message, file=file, field=_by_stage_name(exc.field, names)) from None
    if recipe_over and study.objective is not None:
        raise ConfigError(
            f"override {'recipe.' + recipe_over[0]!r} sets a recipe field, and this study runs "
            f"the Python objective {study.objective!r}; set a study field instead (e.g. "
            "--set stages.NAME.trials=8)",
            file=file,
            field="--set",
        )
    if recipe_over:
        study = study.model_copy(update={"overrides": [*study.overrides, *recipe_over]})
    return study, path


def _check_stage_overrides(overrides: list[str], names: list[str], file: str) -> None:
    """``stages.NAME.field=v`` must name a stage: an unknown name would add a stage with no name."""
    for text in overrides:
        parts = text.partition("=")[0].strip().split(".")
        if parts[0] == "stages" and len(parts) > 1 and parts[1] not in names:
            raise ConfigError(
                f"override {text!r}: no stage named {parts[1]!r}{did_you_mean(parts[1], names)}; "
                f"the stages are {', '.join(names)}",
                file=file,
                field="--set",
            )


def _by_stage_name(field: str | None, names: list[str]) -> str | None:
    """``stages.0.trials`` -> ``stages.coarse.trials``: stages are named on the command line.

    A problem with a stage's name itself keeps the stage's position.
    """
    parts = (field or "").split(".")
    if parts[0] != "stages" or len(parts) < 3 or not parts[1].isdigit() or parts[2] == "name":
        return field
    index = int(parts[1])
    if index < len(names):
        parts[1] = names[index]
    return ".".join(parts)
