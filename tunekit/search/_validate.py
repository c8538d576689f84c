"""A study loaded and checked before anything is written (SearchPlan), then opened.

A command checks its arguments, every stage's recipe and the first stage's data
against the plan, so that a mistake leaves no study directory or journal behind.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from optuna.distributions import CategoricalDistribution

from tunekit.config import Recipe
from tunekit.errors import ConfigError, TunekitError, did_you_mean
from tunekit.outputs import check_output_dir

from ._objective import load_recipe_data, trial_recipe
from ._python import Objective, load_objective, objective_ref
from ._space import Space, check_points, grid_points, space_from_specs
from ._spawn import gpu_groups
from ._stages import StagedSearch
from ._storage import journal_path, masked, open_storage
from ._study import StageSpec, Study, load_study, resolve_recipe_path


@dataclass
class SearchPlan:
    """A study loaded and checked, with nothing written yet; :meth:`open` creates its storage."""

    study: Study
    study_file: Path
    overrides: list[str]
    #: None (and {}) for a study over a Python objective.
    recipe_path: Path | None
    recipe_data: dict[str, Any]
    study_dir: Path
    storage_url: str | None
    space: Space
    from_sanity: str | None = None
    #: The study's Python objective (None for a recipe study, or one opened only to be read).
    objective: Objective | None = None

    def open(self, *, create: bool = True) -> SearchContext:
        """Opens (or, with ``create``, creates) the study's storage.

        Raises:
            TunekitError: ``create`` is False and no search has run on this storage yet.
        """
        if not create:
            self._check_exists()
        backend = open_storage(self.storage_url, self.study_dir, self.study.liveness)
        search = StagedSearch(self.study, backend, base_space=self.space)
        first = search.units(search.stages[0])[0]
        if not create and search.existing(first) is None:
            raise self._missing(
                f"storage {masked(self.storage_url or '')} holds no study {first.study_name!r}"
            )
        plan = {f.name: getattr(self, f.name) for f in fields(SearchPlan)}
        return SearchContext(**{**plan, "overrides": list(self.overrides)}, search=search)

    def _check_exists(self) -> None:
        path = journal_path(self.storage_url, self.study_dir)
        if path is not None and not path.is_file():
            raise self._missing(f"no journal file {path}")

    def _missing(self, what: str) -> TunekitError:
        return TunekitError(
            f"study {self.study.name!r} has not been searched yet ({what}); run "
            f"`tunekit search --study {self.study_file}` first, or give its --out or --storage",
            field="--study",
        )


@dataclass
class SearchContext(SearchPlan):
    """A plan whose storage is open: everything a worker needs, and the staged search on it."""

    search: StagedSearch = field(kw_only=True)

    @property
    def storage_desc(self) -> str:
        return (
            masked(self.storage_url) if self.storage_url else str(self.study_dir / "study.journal")
        )

    def worker_args(self) -> list[str]:
        """The ``tunekit search`` arguments that reopen this same study (for child processes)."""
        args = ["search", "--study", str(self.study_file), "--out", str(self.study_dir)]
        if self.storage_url:
            args += ["--storage", self.storage_url]
        for o in self.overrides:
            args += ["--set", o]
        if self.from_sanity:
            args += ["--from-sanity", self.from_sanity]
        return args


def prepare_search(
    study: str,
    *,
    overrides: list[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    storage: str | None = None,
    from_sanity: str | None = None,
    workers: int | None = None,
    visible_gpus: int | None = None,
    objective: Objective | None = None,
    import_objective: bool = True,
) -> SearchPlan:
    """Loads a study and checks it against its recipe (or imports its objective); writes nothing.

    ``gpus_per_trial: auto`` is resolved here, for ``workers`` (the study's unless given)
    and ``visible_gpus`` (``torch.cuda.device_count()`` unless given), and passed on to the
    workers' processes as ``--set gpus_per_trial=N``; a grid stage without ``trials`` gets
    its grid's size. ``objective`` is a function the trials call in place of the study
    file's ``objective:`` (which it may then leave out); ``import_objective=False`` opens
    an objective study only to read it (reports).
    """
    ref = objective_ref(objective) if objective is not None else None
    cfg, path = load_study(study, overrides, objective=ref)
    overrides = list(overrides or [])
    if cfg.gpus_per_trial == "auto":
        # An objective runs in its worker's process: one trial, one process (and one GPU).
        gpus = 1 if cfg.objective else resolve_gpus(cfg, workers or cfg.workers, visible_gpus)
        cfg = cfg.model_copy(update={"gpus_per_trial": gpus})
        overrides.append(f"gpus_per_trial={gpus}")
    recipe_path: Path | None = None
    recipe_data: dict[str, Any] = {}
    if cfg.recipe is not None:
        recipe_path = resolve_recipe_path(cfg.recipe, path)
        recipe_data = load_recipe_data(recipe_path)
    elif objective is None and import_objective and cfg.objective is not None:
        objective = load_objective(cfg.objective, file=str(path))
    study_dir = Path(out) if out else Path(cfg.output_dir) / cfg.name
    check_output_dir(study_dir, field="--out" if out else "output_dir")
    space = space_from_specs(cfg.space)
    if from_sanity:
        space = ranges_from_sanity(space, from_sanity)
    cfg = grid_trials(cfg, space, file=str(path))
    if recipe_path is not None:
        check_study(cfg, recipe_data, space, file=str(path), recipe_file=str(recipe_path))
    return SearchPlan(
        cfg,
        path,
        overrides,
        recipe_path,
        recipe_data,
        study_dir,
        storage,
        space,
        from_sanity,
        objective,
    )


def open_search(
    study: str,
    *,
    overrides: list[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    storage: str | None = None,
    from_sanity: str | None = None,
    create: bool = True,
    objective: Objective | None = None,
) -> SearchContext:
    """Loads a study, checks it, and opens (or, with ``create``, creates) its storage.

    A study over a Python objective imports it (or takes ``objective``) when ``create``;
    opening an existing study to read it does not need it.

    Example:
        >>> ctx = open_search("digits", out="runs/search/digits")  # doctest: +SKIP
        >>> run_worker(ctx)  # doctest: +SKIP
    """
    plan = prepare_search(
        study,
        overrides=overrides,
        out=out,
        storage=storage,
        from_sanity=from_sanity,
        objective=objective,
        import_objective=create,
    )
    return plan.open(create=create)


def grid_trials(study: Study, space: Space, *, file: str) -> Study:
    """``study`` with each grid stage's ``trials`` set to its grid's size where not given.

    A grid stage's space is the study's (the schema refuses a grid after a refining stage).

    Raises:
        ConfigError: a grid stage asks for more trials than its grid has points.
    """
    stages = []
    for stage in study.stages:
        if stage.sampler == "grid":
            size = len(grid_points(space))
            if not stage.trials_given:
                stage = stage.model_copy(update={"trials": size})
            elif stage.trials > size:
                raise ConfigError(
                    f"value {stage.trials} is not allowed: stage {stage.name!r} is a grid of "
                    f"{size} points, each run once; use at most {size} trials, or leave "
                    "'trials' out to run them all",
                    file=file,
                    field=f"stages.{stage.name}.trials",
                )
        stages.append(stage)
    return study.model_copy(update={"stages": stages})


def resolve_gpus(study: Study, workers: int, visible: int | None = None) -> int:
    """The processes one trial trains on: ``gpus_per_trial``, with ``auto`` resolved.

    ``auto`` is every visible GPU for one worker and ``visible // workers`` for more
    (at least 1); without GPUs it is one CPU process. ``visible`` is
    ``torch.cuda.device_count()`` unless given.

    Example:
        >>> resolve_gpus(Study.model_validate({...}), workers=2, visible=8)  # doctest: +SKIP
        4
    """
    if isinstance(study.gpus_per_trial, int):
        return study.gpus_per_trial
    n = torch.cuda.device_count() if visible is None else visible
    return max(1, n // max(1, workers)) if n > 0 else 1


MAX_WORKERS_PER_CORE = 4


def check_workers(
    study: Study, workers: int, *, file: str | None = None, visible: int | None = None
) -> None:
    """``--workers`` must be 1 or more, and their GPUs must exist (on a GPU machine); without
    GPUs a trial's ranks (``gpus_per_trial``) must not outnumber the CPU cores.

    ``visible`` is the number of GPUs this machine shows (``torch.cuda.device_count()``
    unless given).
    """
    if workers < 1:
        raise ConfigError(
            f"value {workers} is not allowed: use 1 or more workers", field="--workers"
        )
    gpus = torch.cuda.device_count() if visible is None else visible
    per_trial = study.trial_gpus
    if per_trial > gpus > 0:
        raise ConfigError(
            f"value {per_trial} is not allowed here: this machine has {gpus} visible GPU"
            f"{'s' if gpus != 1 else ''} and a trial would need {per_trial}; use --set "
            f"gpus_per_trial=auto (or at most {gpus}), or run it where a worker sees "
            f"{per_trial} GPUs",
            file=file,
            field="gpus_per_trial",
        )
    cores = os.cpu_count() or 1
    if per_trial > cores and gpus == 0:
        # Without GPUs each of a trial's ranks is a gloo training process: more ranks than
        # cores only share the cores, and a GPU study's 8 would start silently on a laptop.
        raise ConfigError(
            f"value {per_trial} is not allowed here: this machine has no GPU, so a trial would "
            f"run as {per_trial} gloo processes on {cores} CPU cores; use "
            f"--set gpus_per_trial=1 (at most {cores}) here, or run it where each worker has "
            f"{per_trial} GPUs",
            file=file,
            field="gpus_per_trial",
        )
    if workers > MAX_WORKERS_PER_CORE * cores and gpus == 0:
        # Each worker is a training process: past a few per core they only fight for it.
        raise ConfigError(
            f"value {workers} is not allowed: this machine has {cores} CPU cores and no GPU; "
            f"use at most {MAX_WORKERS_PER_CORE * cores} workers here (each trains a model), "
            "or start more workers on other machines against the same --storage",
            field="--workers",
        )
    if workers > 1 or per_trial > 1:
        gpu_groups(workers, per_trial)


def ranges_from_sanity(space: Space, file: str) -> Space:
    """Starts the lr and weight-decay ranges from ``tunekit sanity``'s suggestion (sanity.json)."""
    path = Path(file)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("no such file", file=file, field="--from-sanity") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"not JSON ({exc.msg} at line {exc.lineno})", file=file, field="--from-sanity"
        ) from None
    suggested = data.get("search_space") if isinstance(data, dict) else None
    if not isinstance(suggested, dict):
        raise ConfigError("no 'search_space' mapping; run `tunekit sanity` to write one", file=file)
    out = dict(space)
    for key, param in (("lr", "optim.lr"), ("weight_decay", "optim.weight_decay")):
        pair = suggested.get(key)
        if pair is None or param not in out:
            continue
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(v, (int, float)) for v in pair)
        ):
            raise ConfigError(
                f"value {pair!r} is not allowed: give [low, high]",
                file=file,
                field=f"search_space.{key}",
            )
        lo, hi = float(pair[0]), float(pair[1])
        r = out[param]
        if isinstance(r.dist, CategoricalDistribution):
            continue  # the study lists the values to try; a suggested range has no place there
        log = r.dist.log
        if not lo < hi or (log and lo <= 0):
            rule = "a log range needs 0 < low < high" if log else "give low < high"
            raise ConfigError(
                f"value {pair!r} is not allowed: {rule}", file=file, field=f"search_space.{key}"
            )
        out[param] = r.with_bounds(lo, hi)
    return out


def check_study(
    study: Study, recipe_data: dict[str, Any], space: Space, *, file: str, recipe_file: str
) -> None:
    """Builds every stage's recipe at the ends of every range and at every choice (conditional
    parameters where their condition holds), so a bad value fails now, in one line."""
    points = check_points(space)
    for stage in study.stages:
        recipes = []
        for point in points:
            try:
                recipes.append(trial_recipe(study, recipe_data, stage, point, file=recipe_file))
            except ConfigError as exc:
                field = _space_field(study, point, exc.field)
                message = (
                    f"stage {stage.name!r} makes a recipe that does not validate: {exc.message}"
                )
                raise ConfigError(message, file=file, field=field) from None
        check_metrics(study, stage, recipes[0], file)


def _space_field(study: Study, point: dict[str, Any], field: str | None) -> str | None:
    """The study file's place of a recipe error: a parameter, a swap choice's override, or
    (for an error the space did not cause) the recipe's own field."""
    if field and field in study.space:
        return f"space.{field}"
    for name, spec in study.space.items():
        choice = point.get(name, spec.value)
        if field is None or spec.swaps is None or choice not in spec.swaps:
            continue
        for path in spec.swaps[choice]:
            if field == path or field.startswith(path + ".") or path.startswith(field + "."):
                return f"space.{name}.choices.{choice}.{path}"
    return field


def check_metrics(study: Study, stage: StageSpec, recipe: Recipe, file: str) -> None:
    """The study's metric and the stage's pruner's must be keys the trial's evaluation gives.

    The study's metric values each trial and must be the model's own (``val/...``); a pruner
    may compare an averaged model (``ema/val/top1``) that the stage's recipe keeps.
    """
    from tunekit.run import averaging_section, record_metrics, task_metrics

    names = task_metrics(recipe)
    if study.metric not in names:
        raise ConfigError(
            f"value {study.metric!r} is not allowed{did_you_mean(study.metric, names)}: the "
            f"{recipe.task} evaluation gives {', '.join(names)} (to compare an averaged model, "
            f"set a stage's pruner.metric)",
            file=file,
            field="metric",
        )
    metric = stage.pruner.metric
    if metric is None or metric in record_metrics(recipe):
        return
    field = f"stages.{stage.name}.pruner.metric"
    section = averaging_section(metric.split("/", 1)[0])
    if section:
        raise ConfigError(
            f"value {metric!r} is not allowed here: stage {stage.name!r} has no "
            f"averaging.{section} in its recipe; add it to the stage's set (e.g. "
            f"averaging.ema.decay=0.98 for ema) or prune on {study.metric!r}",
            file=file,
            field=field,
        )
    allowed = record_metrics(recipe)
    raise ConfigError(
        f"value {metric!r} is not allowed{did_you_mean(metric, allowed)}: stage {stage.name!r}'s "
        f"trials evaluate {', '.join(allowed)}",
        file=file,
        field=field,
    )
