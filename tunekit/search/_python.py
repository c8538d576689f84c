"""A study over the user's own function: ``objective: "pkg.mod:fn"`` instead of a recipe.

A trial calls ``fn(params, trial)`` in its worker's process: ``params`` are the
trial's values by the space's names (an or_zero pair as one number, a section
swap as its choice's name, fixed parameters included where their condition
holds), and ``trial`` is an :class:`ObjectiveTrial`. Stages, cells, refinement,
pruning, repeats, storages and workers are the staged search's own; only what a
trial runs differs (see ``tunekit.search._trial``).
"""

from __future__ import annotations

import importlib
import math
import reprlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from tunekit.errors import ConfigError, TunekitError, did_you_mean, first_line

from ._objective import _condition_met
from ._space import recipe_values
from ._stages import SEED_PARAM, Stage
from ._study import Study

if TYPE_CHECKING:
    from ._validate import SearchContext

#: What a trial calls: ``fn(params, trial)`` returns the trial's value, or None for the last
#: value it reported.
Objective = Callable[[dict[str, Any], "ObjectiveTrial"], Any]

#: A trial's failure reason when the objective gave no value at all.
NO_VALUE = "the objective returned None and reported no value"


@dataclass
class ObjectiveTrial:
    """What a study's objective learns about its trial, and how it reports progress.

    Attributes:
        number: the trial's number in its (stage, cell) study.
        stage: the stage's name (``coarse``, ``fine``, ``fine2`` for a further round).
        cell: the values of the scientific parameters this trial is tuned for (``{}``
            without them).
        epochs: the stage's ``epochs``, what your loop should train (None when the
            stage gives only ``steps``).
        steps: the stage's ``steps`` budget of optimizer steps, or None.
        seed: the repeat stage's seed for this trial, else the study's ``seed``.
        run_dir: a directory for this trial's files (checkpoints; a ``metrics.jsonl``
            written there, e.g. by ``tunekit.watch(..., out=trial.run_dir)``, gives the
            study report its curve).
        optuna_trial: the Optuna trial itself (user attributes, say).

    Example::

        def objective(params, trial):
            for epoch in range(trial.epochs):
                accuracy = train_one_epoch(params["lr"])
                trial.report(epoch + 1, accuracy)  # raises optuna.TrialPruned to stop here
            return accuracy
    """

    number: int
    stage: str
    cell: dict[str, Any]
    epochs: int | None
    steps: int | None
    seed: int
    run_dir: Path
    optuna_trial: optuna.Trial = field(repr=False)
    #: What the trial reported, by step.
    reported: dict[int, float] = field(default_factory=dict, repr=False)
    #: The last value reported (the trial's value when the objective returns None).
    last_value: float | None = field(default=None, repr=False)
    #: Why the trial stopped early, when it did.
    reason: str | None = field(default=None, repr=False)

    def report(self, step: int, value: float) -> None:
        """Reports ``value`` at ``step`` to the pruner; raises ``optuna.TrialPruned`` to stop.

        Report at the same kind of step in every trial (epochs, or optimizer steps) so
        that trials meet the pruner at equal budgets. A non-finite value stops the trial
        too: it is pruned with that reason, as a diverged recipe trial is.
        """
        value = float(value)
        if not math.isfinite(value):
            self.reason = f"non-finite value ({value}) reported at step {step}"
            raise optuna.TrialPruned(self.reason)
        self.optuna_trial.report(value, step)
        self.reported[step] = value
        self.last_value = value
        if self.optuna_trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step} (value {value:.4g})")


def objective_ref(fn: Callable[..., Any]) -> str:
    """``pkg.mod:fn`` for a function passed in: the study's ``objective`` field then."""
    module = getattr(fn, "__module__", None) or "<unknown>"
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    return f"{module}:{name}"


def load_objective(ref: str, *, file: str) -> Objective:
    """Imports ``pkg.mod:fn`` (``fn`` may be dotted: ``Class.method``).

    The module is looked for where Python looks (the current directory under
    ``python -m``, ``PYTHONPATH``) and then in the study file's folder, so an
    ``objective.py`` beside the study needs no installing.

    Raises:
        ConfigError: the module does not import, has no such name, or it is not callable.
    """
    module_name, _, attr = ref.partition(":")
    folder = str(Path(file).resolve().parent)
    if folder not in sys.path:
        # Last, so that a module of the study's folder never shadows an installed one.
        sys.path.append(folder)
    try:
        obj: Any = importlib.import_module(module_name.strip())
    except Exception as exc:  # an import error, a syntax error, or the module's own raise
        raise ConfigError(
            f"value {ref!r} does not import: {type(exc).__name__}: {first_line(exc, 200)}",
            file=file,
            field="objective",
        ) from None
    where = module_name.strip()
    for part in attr.strip().split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise ConfigError(
                f"value {ref!r} is not allowed: {where} has no {part!r}{did_you_mean(part, names)}",
                file=file,
                field="objective",
            )
        obj = getattr(obj, part)
        where = f"{where}.{part}"
    if not callable(obj):
        raise ConfigError(
            f"value {ref!r} is not allowed: it is a {type(obj).__name__}, not a function "
            "fn(params, trial)",
            file=file,
            field="objective",
        )
    fn: Objective = obj
    return fn


def objective_params(
    study: Study, stage: Stage, sampled: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    """The trial's values by the space's names (in the space's order), and its seed.

    Resolved as :func:`tunekit.search.trial_recipe` resolves them for a recipe: an or_zero
    pair is one number, a section swap is its choice's name, a fixed parameter is there
    where its condition holds. A repeat trial's seed comes out of its values.
    """
    values = recipe_values(sampled)
    seed = study.seed
    if stage.spec.is_repeat and SEED_PARAM in values:
        seed = int(values.pop(SEED_PARAM))
    fixed = {n: s.value for n, s in study.space.items() if s.role == "fixed"}
    every = {**fixed, **values}
    params = {
        n: every[n]
        for n, s in study.space.items()
        if n in every and (s.role != "fixed" or _condition_met(s.when, every))
    }
    return params, seed


def objective_trial(
    stage: Stage, trial: optuna.Trial, *, seed: int, run_dir: Path
) -> ObjectiveTrial:
    """The trial object for ``fn``; its run directory is created here."""
    spec = stage.spec
    # As a recipe trial's train.epochs: a steps-only stage leaves the length to the loop.
    epochs = spec.epochs if spec.steps is None or "epochs" in spec.model_fields_set else None
    run_dir.mkdir(parents=True, exist_ok=True)
    return ObjectiveTrial(
        number=trial.number,
        stage=stage.name,
        cell=stage.cell.params,
        epochs=epochs,
        steps=spec.steps,
        seed=seed,
        run_dir=run_dir,
        optuna_trial=trial,
    )


def final_value(returned: Any, trial: ObjectiveTrial) -> tuple[float | None, str | None]:
    """The trial's value from what the objective returned (None: its last report), or why none."""
    if returned is None:
        if trial.last_value is None:
            return None, f"{NO_VALUE} (return a number, or call trial.report(step, value))"
        returned = trial.last_value
    try:
        value = float(returned)
    except (TypeError, ValueError):
        return None, f"the objective returned {reprlib.repr(returned)}, not a number"
    if not math.isfinite(value):
        return None, f"the objective's value is not finite ({value})"
    return value, None


def check_first_stage(ctx: SearchContext) -> None:
    """Stops the search when every trial of the first stage failed for want of a value:
    the function returns nothing, and every later stage would fail the same way.

    Raises:
        TunekitError: every finished trial of the first stage failed with :data:`NO_VALUE`.
    """
    search = ctx.search
    trials = [t for u in search.units(search.stages[0]) for t in search.trials(u)]
    finished = [t for t in trials if t.state.is_finished()]
    if finished and all(
        t.state == TrialState.FAIL
        and str(t.user_attrs.get("failure_reason") or "").startswith(NO_VALUE)
        for t in finished
    ):
        raise TunekitError(
            f"every trial of stage {search.stages[0].name!r} failed: {NO_VALUE}; make "
            f"{ctx.study.objective} return the trial's value (or call trial.report(step, value))",
            file=str(ctx.study_file),
            field="objective",
        )
