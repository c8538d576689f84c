"""Optuna's samplers and pruners: a table of builders for the names the study schema allows."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler, BruteForceSampler, GridSampler
from optuna.study import Study as OptunaStudy
from optuna.trial import FrozenTrial, TrialState

from ._space import Space, grid_search_space, has_conditions
from ._study import PrunerName, PrunerSpec, SamplerName

#: Quasi-random (Sobol) or random to explore, TPE to exploit; built from (seed, n_startup).
#: A grid needs the stage's ranges, which are known only once the stage starts: until then
#: it samples at random, and :func:`grid_sampler` replaces it (see StagedSearch.space).
SAMPLERS: dict[SamplerName, Callable[[int, int], BaseSampler]] = {
    "grid": lambda seed, _: optuna.samplers.RandomSampler(seed=seed),
    # scramble: unscrambled Sobol starts at the centre and corners, which wastes trials.
    "qmc": lambda seed, _: optuna.samplers.QMCSampler(
        scramble=True, seed=seed, warn_independent_sampling=False, warn_asynchronous_seeding=False
    ),
    "random": lambda seed, _: optuna.samplers.RandomSampler(seed=seed),
    "tpe": lambda seed, n_startup: optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=n_startup, multivariate=True
    ),
}

#: Median, successive halving (ASHA), Hyperband or none; built from (spec, the stage's steps).
#: Trials report at optimizer steps, so every resource counts optimizer steps.
PRUNERS: dict[PrunerName, Callable[[PrunerSpec, int | None], BasePruner]] = {
    "none": lambda spec, steps: optuna.pruners.NopPruner(),
    "median": lambda spec, steps: optuna.pruners.MedianPruner(
        n_startup_trials=spec.n_startup_trials, n_warmup_steps=spec.n_warmup_steps
    ),
    "asha": lambda spec, steps: optuna.pruners.SuccessiveHalvingPruner(
        min_resource=spec.min_resource, reduction_factor=spec.reduction_factor
    ),
    "hyperband": lambda spec, steps: optuna.pruners.HyperbandPruner(
        min_resource=spec.min_resource,
        max_resource=spec.max_resource or steps or "auto",
        reduction_factor=spec.reduction_factor,
    ),
}


def build_sampler(name: SamplerName, seed: int, n_startup: int) -> BaseSampler:
    """The stage's sampler (``n_startup``: TPE's random trials before it models the results)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLERS[name](seed, n_startup)


def build_pruner(spec: PrunerSpec, steps: int | None) -> BasePruner:
    """The stage's pruner; Hyperband's ``max_resource`` is the stage's ``steps`` unless given
    (and Optuna's ``"auto"``, the first finished trial's steps, for a stage without them)."""
    return PRUNERS[spec.name](spec, steps)


class _Grid(GridSampler):
    """Optuna's grid, without stopping the study after its last point (ask-and-tell cannot)."""

    def after_trial(
        self,
        study: OptunaStudy,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        # A stage ends when its trial count (the grid's size) is accounted for.
        return None


class _Tree(BruteForceSampler):
    """Optuna's exhaustive sampler for define-by-run spaces, without stopping the study either."""

    def after_trial(
        self,
        study: OptunaStudy,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        return None


def grid_sampler(space: Space, seed: int) -> BaseSampler:
    """A grid over ``space``: Optuna's GridSampler, or for a space with conditional parameters
    its BruteForceSampler, which walks each choice's own parameters and so never repeats a
    point that differs only in a parameter the trial does not use.

    Example:
        >>> from tunekit.search._space import Range
        >>> from optuna.distributions import CategoricalDistribution as C
        >>> grid_sampler({"a": Range("a", C((1, 2)))}, seed=0).__class__.__name__
        '_Grid'
    """
    if has_conditions(space):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _Tree(seed=seed)
    values: dict[str, Any] = grid_search_space(space)
    return _Grid(values, seed=seed)
