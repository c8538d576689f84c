"""Optuna's samplers and pruners: a table of builders for the names the study schema allows."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import optuna
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler

from ._study import PrunerName, PrunerSpec, SamplerName

#: Quasi-random (Sobol) or random to explore, TPE to exploit; built from (seed, n_startup).
SAMPLERS: dict[SamplerName, Callable[[int, int], BaseSampler]] = {
    # scramble: unscrambled Sobol starts at the centre and corners, which wastes trials.
    "qmc": lambda seed, _: optuna.samplers.QMCSampler(
        scramble=True, seed=seed, warn_independent_sampling=False, warn_asynchronous_seeding=False
    ),
    "random": lambda seed, _: optuna.samplers.RandomSampler(seed=seed),
    "tpe": lambda seed, n_startup: optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=n_startup, multivariate=True
    ),
}

#: Median, successive halving (ASHA), Hyperband or none; built from (spec, the stage's epochs).
PRUNERS: dict[PrunerName, Callable[[PrunerSpec, int], BasePruner]] = {
    "none": lambda spec, epochs: optuna.pruners.NopPruner(),
    "median": lambda spec, epochs: optuna.pruners.MedianPruner(
        n_startup_trials=spec.n_startup_trials, n_warmup_steps=spec.n_warmup_steps
    ),
    "asha": lambda spec, epochs: optuna.pruners.SuccessiveHalvingPruner(
        min_resource=spec.min_resource, reduction_factor=spec.reduction_factor
    ),
    "hyperband": lambda spec, epochs: optuna.pruners.HyperbandPruner(
        min_resource=spec.min_resource,
        max_resource=spec.max_resource or epochs,
        reduction_factor=spec.reduction_factor,
    ),
}


def build_sampler(name: SamplerName, seed: int, n_startup: int) -> BaseSampler:
    """The stage's sampler (``n_startup``: TPE's random trials before it models the results)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLERS[name](seed, n_startup)


def build_pruner(spec: PrunerSpec, epochs: int) -> BasePruner:
    """The stage's pruner; Hyperband's ``max_resource`` is the stage's ``epochs`` unless given."""
    return PRUNERS[spec.name](spec, epochs)
