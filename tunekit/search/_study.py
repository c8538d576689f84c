"""The study file: which recipe, which metric, the search space and the stages.

A study is named by its file in ``studies/`` (``--study digits``) or by a path.
Shapes, ranges and names are checked here so that a bad file fails in one line
before any trial runs; whether the sampled values make a valid recipe is
checked by :func:`tunekit.search.check_study` against the recipe schema.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from tunekit.config import apply_overrides, read_yaml, validate
from tunekit.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


Role = Literal["scientific", "nuisance", "fixed"]


class ParamSpec(_Section):
    """One hyperparameter: a recipe field (``optim.lr``) and where its values come from.

    Roles follow the tuning playbook: ``scientific`` parameters are what the
    study measures (its summary gives the best trial per value), ``nuisance``
    parameters are optimised so the comparison is fair, ``fixed`` ones are
    held at ``value`` for the whole study.
    """

    type: Literal["log_uniform", "uniform", "int", "categorical"] = "uniform"
    role: Role = "nuisance"
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: list[Any] | None = None
    value: Any = None
    # Refinement never widens a range past these (e.g. momentum < 1).
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.role == "fixed":
            if self.value is None:
                raise ValueError("a fixed parameter needs 'value'")
            return self
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            if len({repr(c) for c in self.choices}) != len(self.choices):
                raise ValueError(f"choices {self.choices} repeat a value; list each once")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs 'low' and 'high'")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("'low' and 'high' must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"inverted range: low {self.low} > high {self.high}; swap them")
        if self.low == self.high:
            raise ValueError(f"empty range: low == high == {self.low}; use role: fixed with value")
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


class PrunerSpec(_Section):
    """A pruner for one stage: Optuna's median, successive halving (ASHA) or Hyperband."""

    name: Literal["none", "median", "asha", "hyperband"] = "median"
    # What the pruner compares (the study's metric unless given). With a schedule that
    # decays over the trial, a high LR looks worst until the LR comes down, so early
    # rungs prune the configurations that end best; "ema/val/top1" (with averaging.ema
    # in the stage's recipe) ranks trials early much as they will end.
    metric: str | None = None
    # median
    n_startup_trials: int = Field(default=3, ge=0)
    n_warmup_steps: int = Field(default=0, ge=0)
    # asha / hyperband
    min_resource: PositiveInt = 1
    reduction_factor: int = 3
    # hyperband: the number of epochs of the stage unless given.
    max_resource: PositiveInt | None = None

    @model_validator(mode="after")
    def _check(self) -> PrunerSpec:
        if self.name in ("asha", "hyperband") and self.reduction_factor < 2:
            raise ValueError(f"reduction_factor must be 2 or more, got {self.reduction_factor}")
        if self.max_resource is not None and self.max_resource < self.min_resource:
            raise ValueError(
                f"max_resource {self.max_resource} is below min_resource {self.min_resource}"
            )
        return self


class RefineSpec(_Section):
    """How a stage narrows the previous stage's ranges around its best trials."""

    top_k: PositiveInt = 3
    # Padding around the top-k values, as a fraction of their spread (log space for log ranges).
    margin: float = Field(default=0.25, ge=0.0)
    # A best value within this fraction of the range's width from an edge is "at the edge".
    edge: float = Field(default=0.1, ge=0.0, lt=0.5)
    # When at the edge, the range is widened past it by this fraction of its width.
    widen: float = Field(default=0.5, gt=0.0)


class StageSpec(_Section):
    """One round of the search: a sampler, a number of trials of a fixed length, a pruner."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    sampler: Literal["qmc", "random", "tpe"] = "random"
    trials: PositiveInt = 10
    epochs: PositiveInt = 2
    pruner: PrunerSpec = Field(default_factory=lambda: PrunerSpec(name="none"))
    # Narrow the previous stage's ranges around its top-k (absent on the first stage).
    refine: RefineSpec | None = None
    # Extra recipe overrides for this stage only (e.g. a constant LR for longer training).
    set: list[str] = Field(default_factory=list)
    # Run the previous stage's best parameters first when this stage trains differently
    # (other epochs or set): a fine stage starts from what worked.
    seed_best: bool = True


class RoundsSpec(_Section):
    """Further rounds after the listed stages: the last stage again, refined each time."""

    extra: int = Field(default=0, ge=0)
    # Stop starting rounds when the study holds this many trials or has run this long.
    max_trials: PositiveInt | None = None
    time_budget_s: float | None = Field(default=None, gt=0)


class LivenessSpec(_Section):
    """How soon a killed worker's trial is failed and retried."""

    heartbeat_s: float = Field(default=2.0, gt=0)
    grace_s: float = Field(default=30.0, gt=0)
    max_retry: int = Field(default=2, ge=0)

    @model_validator(mode="after")
    def _check(self) -> LivenessSpec:
        if self.grace_s <= self.heartbeat_s:
            raise ValueError(
                f"grace_s {self.grace_s} must be longer than heartbeat_s {self.heartbeat_s}"
            )
        return self


class Study(_Section):
    """A whole search. See ``studies/digits.yaml`` for an example."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    recipe: str
    # Recipe overrides applied to every trial (e.g. a smaller model for a quick study).
    set: list[str] = Field(default_factory=list)
    metric: str = "val/top1"
    direction: Literal["maximize", "minimize"] = "maximize"
    space: dict[str, ParamSpec]
    stages: list[StageSpec] = Field(min_length=1)
    rounds: RoundsSpec = Field(default_factory=lambda: RoundsSpec())
    seed: int = 0
    # Processes (GPUs on a GPU machine, gloo processes on a CPU one) that train one trial.
    gpus_per_trial: PositiveInt = 1
    workers: PositiveInt = 1
    liveness: LivenessSpec = Field(default_factory=lambda: LivenessSpec())
    # Recipe overrides from the command line (--set recipe.a.b=v), applied after the stages' own.
    overrides: list[str] = Field(default_factory=list)
    # Where the study's directory goes when --out is not given.
    output_dir: str = "runs/search"

    @model_validator(mode="after")
    def _check(self) -> Study:
        names = [s.name for s in self.stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage names must be unique, {dupes} repeat")
        if self.stages[0].refine is not None:
            raise ValueError("the first stage has no earlier stage to refine; remove its 'refine'")
        if not any(p.role != "fixed" for p in self.space.values()):
            raise ValueError("the space needs at least one parameter that is not fixed")
        return self

    @property
    def mode(self) -> str:
        return "max" if self.direction == "maximize" else "min"


def find_study_file(name_or_path: str) -> Path:
    """``digits`` -> ``studies/digits.yaml`` (here, then next to the package); a path as given."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        if not path.is_file():
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
    from tunekit.errors import did_you_mean

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


def load_study(name_or_path: str, overrides: list[str] | None = None) -> tuple[Study, Path]:
    """Loads a study by name or path, with ``--set`` overrides.

    Returns the validated study and its file. ``recipe.a.b=v`` overrides go to
    every trial's recipe; ``stages.NAME.field=v`` overrides one stage (by its
    name); anything else overrides a study field (``workers=2``).

    Example:
        >>> study, path = load_study("digits", ["stages.coarse.trials=4"])  # doctest: +SKIP
    """
    path = find_study_file(name_or_path)
    data = read_yaml(path)
    overrides = overrides or []
    study_over = [o for o in overrides if not o.startswith("recipe.")]
    recipe_over = [o[len("recipe.") :] for o in overrides if o.startswith("recipe.")]
    stages = data.get("stages")
    by_name = isinstance(stages, list) and all(isinstance(s, dict) and "name" in s for s in stages)
    if by_name and isinstance(stages, list):
        # Stages are a list in the file and addressed by name on the command line.
        data["stages"] = {str(s["name"]): s for s in stages}
    try:
        data = apply_overrides(data, study_over)
    except ConfigError as exc:
        raise ConfigError(exc.message, file=str(path), field=exc.field) from None
    if by_name:
        data["stages"] = list(data["stages"].values())
    study = validate(Study, data, file=str(path))
    if recipe_over:
        study = study.model_copy(update={"overrides": [*study.overrides, *recipe_over]})
    return study, path
