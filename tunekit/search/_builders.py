"""Optuna's samplers and pruners, built from the names (and settings) a study file gives.

Each table maps a name of the study schema (``StageSpec.sampler``,
``PrunerSpec.name``) to its builder; the schema's ``Literal`` refuses any other
name, listing these.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import optuna
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler

from ._study import PrunerSpec, SamplerName


def _qmc(seed: int, n_startup: int) -> BaseSampler:
    # scramble: unscrambled Sobol starts at the centre and corners, which wastes trials.
    return optuna.samplers.QMCSampler(
        scramble=True, seed=seed, warn_independent_sampling=False, warn_asynchronous_seeding=False
    )


def _tpe(seed: int, n_startup: int) -> BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup, multivariate=True)


def _random(seed: int, n_startup: int) -> BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


#: Quasi-random (Sobol) or random to explore; TPE to exploit. Builders take (seed, n_startup).
SAMPLERS: dict[SamplerName, Callable[[int, int], BaseSampler]] = {
    "qmc": _qmc,
    "random": _random,
    "tpe": _tpe,
}


def _median(spec: PrunerSpec, epochs: int) -> BasePruner:
    return optuna.pruners.MedianPruner(
        n_startup_trials=spec.n_startup_trials, n_warmup_steps=spec.n_warmup_steps
    )


def _asha(spec: PrunerSpec, epochs: int) -> BasePruner:
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=spec.min_resource, reduction_factor=spec.reduction_factor
    )


def _hyperband(spec: PrunerSpec, epochs: int) -> BasePruner:
    return optuna.pruners.HyperbandPruner(
        min_resource=spec.min_resource,
        max_resource=spec.max_resource or epochs,
        reduction_factor=spec.reduction_factor,
    )


def _none(spec: PrunerSpec, epochs: int) -> BasePruner:
    return optuna.pruners.NopPruner()


#: Median, successive halving (ASHA), Hyperband or none. Builders take (spec, stage epochs).
PRUNERS: dict[str, Callable[[PrunerSpec, int], BasePruner]] = {
    "none": _none,
    "median": _median,
    "asha": _asha,
    "hyperband": _hyperband,
}


def build_sampler(name: SamplerName, seed: int, n_startup: int) -> BaseSampler:
    """The stage's sampler (``n_startup``: TPE's random trials before it models the results)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLERS[name](seed, n_startup)


def build_pruner(spec: PrunerSpec, epochs: int) -> BasePruner:
    """The stage's pruner; Hyperband's ``max_resource`` is the stage's ``epochs`` unless given."""
    return PRUNERS[spec.name](spec, epochs)
