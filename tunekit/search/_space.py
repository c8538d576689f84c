"""Search spaces: ranges that a trial samples from, and their refinement between stages.

A :class:`Range` is Optuna's distribution with the role, hard limits and
condition of the study file; it round-trips through JSON, so a stage's ranges
are stored in the study and every worker reads the same ones.
Refinement is a pure function of the previous ranges and the best trials.

A range with a condition (``when``) is sampled only in trials where the
categorical parameters it names took one of its values; the unconditional
ranges are sampled first, so a condition reads values of the same trial
(Optuna's define-by-run: a trial's parameters are the ones it suggested).

A parameter with ``or_zero`` is two ranges built from the same pieces: a
categorical switch ``<name>:zero`` and the log range, conditional on the
switch being off. The sampler models both, refinement narrows both, and
:func:`recipe_values` turns the pair back into one number for the recipe
and for every summary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from ._study import ZERO_SUFFIX, ParamSpec, RefineSpec

#: Optuna's distributions that a study's ranges use.
Distribution = FloatDistribution | IntDistribution | CategoricalDistribution
#: (parameter, values it must take) pairs that all hold where a range is sampled.
Conditions = tuple[tuple[str, tuple[Any, ...]], ...]


@dataclass(frozen=True)
class Range:
    """One recipe field's values in one stage: Optuna's distribution, and what Optuna lacks.

    ``role`` (scientific or nuisance) decides whether refinement narrows it,
    ``min`` and ``max`` are hard limits that widening never passes, and ``when``
    says in which trials it is sampled at all.
    """

    name: str
    dist: Distribution
    role: str = "nuisance"
    min: float | None = None
    max: float | None = None
    when: Conditions | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Range:
        """A range as :meth:`to_dict` stored it, or a study file's parameter (``ParamSpec``)."""
        dist = distribution(d["type"], d.get("low"), d.get("high"), d.get("step"), d.get("choices"))
        return cls(
            d["name"], dist, d["role"], d.get("min"), d.get("max"), _conditions(d.get("when"))
        )

    def to_dict(self) -> dict[str, Any]:
        """The form stored in the study and shown in summary.json (the study file's words)."""
        d = self.dist
        none: dict[str, Any] = {"low": None, "high": None, "step": None, "choices": None}
        if isinstance(d, CategoricalDistribution):
            values = {**none, "choices": list(d.choices)}
        else:  # an int range's step 1 was not given: stored as none, as the study file has it
            step = None if isinstance(d, IntDistribution) and d.step == 1 else d.step
            values = {**none, "low": d.low, "high": d.high, "step": step}
        when = {k: list(v) for k, v in self.when} if self.when is not None else None
        head = {"name": self.name, "type": kind(d), "role": self.role}
        return {**head, **values, "min": self.min, "max": self.max, "when": when}

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether this parameter is sampled in a trial whose other values are ``values``."""
        return all(k in values and values[k] in allowed for k, allowed in self.when or ())

    def suggest(self, trial: optuna.Trial) -> Any:
        """The value of this parameter for ``trial`` (Optuna's distributions do the sampling)."""
        d = self.dist
        if isinstance(d, CategoricalDistribution):
            return trial.suggest_categorical(self.name, d.choices)
        if isinstance(d, IntDistribution):
            return trial.suggest_int(self.name, d.low, d.high, step=d.step, log=d.log)
        return trial.suggest_float(self.name, d.low, d.high, step=d.step, log=d.log)

    def contains(self, value: Any) -> bool:
        d = self.dist
        if isinstance(d, CategoricalDistribution):
            return value in d.choices
        return bool(d.low <= value <= d.high)

    def with_bounds(self, low: float, high: float) -> Range:
        """This numeric range between ``low`` and ``high`` (an int range rounds them)."""
        d = self.dist
        assert not isinstance(d, CategoricalDistribution)
        if isinstance(d, IntDistribution):
            return replace(self, dist=IntDistribution(int(low), int(high), step=d.step))
        return replace(self, dist=FloatDistribution(low, high, log=d.log, step=d.step))


Space = dict[str, Range]


def distribution(
    type: str, low: float | None, high: float | None, step: float | None, choices: Any
) -> Distribution:
    """Optuna's distribution for a range in the study file's words (a log range takes no step)."""
    if type == "categorical":
        return CategoricalDistribution(tuple(choices))
    assert low is not None and high is not None
    if type == "int":
        return IntDistribution(int(low), int(high), step=int(step or 1))
    if type == "log_uniform":
        return FloatDistribution(low, high, log=True)
    return FloatDistribution(low, high, step=step)


def kind(dist: Distribution) -> str:
    """The study file's word for ``dist``: log_uniform, uniform, int or categorical."""
    if isinstance(dist, CategoricalDistribution):
        return "categorical"
    if isinstance(dist, IntDistribution):
        return "int"
    return "log_uniform" if dist.log else "uniform"


def _conditions(when: Mapping[str, Any] | None) -> Conditions | None:
    if not when:
        return None
    return tuple((k, tuple(v) if isinstance(v, (list, tuple)) else (v,)) for k, v in when.items())


def sample(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    """Draws the parameters of ``space`` that are active in ``trial``: unconditional ones first.

    A retried or enqueued trial gets its stored values back (Optuna's ``suggest_*``).
    """
    values: dict[str, Any] = {}
    for name, r in sorted(space.items(), key=lambda item: item[1].when is not None):
        if r.active(values):
            values[name] = r.suggest(trial)
    return values


def only_active(space: Space, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without the parameters whose condition the other values do not meet."""
    return {k: v for k, v in values.items() if k not in space or space[k].active(values)}


def check_points(space: Space) -> list[dict[str, Any]]:
    """Points of ``space`` that reach every end of every range and every choice.

    1. bases: every categorical at its first choice, then each choice of each
       categorical in turn (with the condition that lets it be sampled met);
    2. at each base, every numeric range at its low end, then at its high end;
    3. each point keeps only its active parameters; repeats are dropped.

    The first point is the plainest trial (first choices, low ends).
    """
    categorical = {
        n: (r, r.dist.choices)
        for n, r in space.items()
        if isinstance(r.dist, CategoricalDistribution)
    }
    base0 = {n: choices[0] for n, (_, choices) in categorical.items()}
    bases = [base0]
    for name, (r, choices) in categorical.items():
        for choice in choices:
            base = {**base0, **{k: allowed[0] for k, allowed in r.when or ()}, name: choice}
            bases.append(base)
    points: list[dict[str, Any]] = []
    seen: set[str] = set()
    for base in bases:
        for end in ("low", "high"):
            point: dict[str, Any] = dict(base)
            for name, r in space.items():
                if not isinstance(r.dist, CategoricalDistribution):
                    point[name] = r.dist.low if end == "low" else r.dist.high
            point = {n: point[n] for n in space if n in point}
            point = only_active(space, point)
            key = repr(sorted(point.items(), key=lambda kv: kv[0]))
            if key not in seen:
                seen.add(key)
                points.append(point)
    return points


def space_from_specs(specs: dict[str, ParamSpec]) -> Space:
    """The sampled part of a study's space (fixed parameters become recipe overrides).

    An ``or_zero`` parameter becomes its switch ``<name>:zero`` (False, True) and its
    log range, sampled only where the switch is False (under the parameter's own
    condition, if it has one, for both).
    """
    space: Space = {}
    for name, s in specs.items():
        if s.role == "fixed":
            continue
        r = Range.from_dict({**s.model_dump(), "name": name})
        if s.or_zero:
            switch = name + ZERO_SUFFIX
            space[switch] = Range(
                switch, CategoricalDistribution((False, True)), r.role, when=r.when
            )
            r = replace(r, when=(*(r.when or ()), (switch, (False,))))
        space[name] = r
    return space


def recipe_values(params: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's Optuna parameters as recipe values: an or_zero pair becomes one number.

    ``{"optim.weight_decay:zero": True}`` -> ``{"optim.weight_decay": 0.0}``; with the switch
    False, the drawn value stands alone.

    Example:
        >>> recipe_values({"optim.lr": 0.1, "optim.weight_decay:zero": True})
        {'optim.lr': 0.1, 'optim.weight_decay': 0.0}
    """
    out: dict[str, Any] = {}
    for name, value in params.items():
        if not name.endswith(ZERO_SUFFIX):
            out[name] = value
        elif value is True:
            out[name.removesuffix(ZERO_SUFFIX)] = 0.0
    return out


def grid_values(r: Range) -> list[Any]:
    """Every value a grid takes for ``r``: its choices, or its range's low to high by its step.

    Raises:
        ValueError: a float range without a step (the study schema refuses it in a grid).
    """
    d = r.dist
    if isinstance(d, CategoricalDistribution):
        return list(d.choices)
    if isinstance(d, IntDistribution):
        return list(range(d.low, d.high + 1, d.step))
    if d.step is None:
        raise ValueError(f"{r.name} is a float range without a step, which has no grid")
    # In decimals, as Optuna's BruteForceSampler counts: 0.1 * 3 must be 0.3, not 0.30000000000000004.
    low, step = Decimal(str(d.low)), Decimal(str(d.step))
    n = int((Decimal(str(d.high)) - low) / step) + 1
    return [float(low + k * step) for k in range(n)]


def grid_points(space: Space) -> list[dict[str, Any]]:
    """The points of a grid over ``space``: every combination of the unconditional values, and
    under each, every combination of the conditional ranges active there (once each).

    Example:
        >>> from optuna.distributions import CategoricalDistribution as C
        >>> len(grid_points({"a": Range("a", C((1, 2))), "b": Range("b", C((3, 4)))}))
        4
    """
    points: list[dict[str, Any]] = [{}]
    for name, r in sorted(space.items(), key=lambda item: item[1].when is not None):
        values = grid_values(r)
        points = [
            {**p, name: v} if r.active(p) else p
            for p in points
            for v in (values if r.active(p) else [None])
        ]
    return points


def has_conditions(space: Space) -> bool:
    """Whether some range of ``space`` is sampled only under a condition."""
    return any(r.when is not None for r in space.values())


def grid_search_space(space: Space) -> dict[str, list[Any]]:
    """Optuna's GridSampler form of an unconditional ``space``: each name with its values."""
    return {name: grid_values(r) for name, r in space.items()}


@dataclass(frozen=True)
class EdgeFlag:
    """A best value that sat at the edge of its range, and how the range moved."""

    param: str
    side: str  # "low" | "high"
    best: float
    old: tuple[float, float]
    new: tuple[float, float]

    def message(self) -> str:
        return (
            f"{self.param}: best value {self.best:.4g} is at the {self.side} edge of "
            f"[{self.old[0]:.4g}, {self.old[1]:.4g}]; widened to [{self.new[0]:.4g}, {self.new[1]:.4g}]"
        )


def refine_space(
    space: Space, top: list[dict[str, Any]], spec: RefineSpec
) -> tuple[Space, list[EdgeFlag]]:
    """Narrows each nuisance range around the ``top`` trials' values (best first).

    The new range spans the top-k values plus ``margin`` of their spread on each
    side (in log space for log ranges), and stays inside the old range, except
    where the best value lies within ``edge`` of the old range's edge: there the
    range is widened past that edge by ``widen`` of its width (within the hard
    ``min``/``max``) and an :class:`EdgeFlag` says so. Scientific parameters keep
    their range: they are what the study compares, not what it optimises.
    """
    if not top:
        return dict(space), []
    new: Space = {}
    flags: list[EdgeFlag] = []
    for name, r in space.items():
        values = [t[name] for t in top if name in t]
        if r.role == "scientific" or not values:
            new[name] = r
        elif isinstance(r.dist, CategoricalDistribution):
            kept = tuple(c for c in r.dist.choices if c in values)
            new[name] = replace(r, dist=CategoricalDistribution(kept or r.dist.choices))
        else:
            refined, flag = _refine_numeric(r, [float(v) for v in values], spec)
            new[name] = refined
            if flag is not None:
                flags.append(flag)
    return new, flags


def _refine_numeric(
    r: Range, values: list[float], spec: RefineSpec
) -> tuple[Range, EdgeFlag | None]:
    d = r.dist
    assert not isinstance(d, CategoricalDistribution)
    log = d.log
    fwd = math.log if log else (lambda x: x)
    inv = math.exp if log else (lambda x: x)
    lo, hi = fwd(d.low), fwd(d.high)
    width = hi - lo
    tv = [fwd(v) for v in values]
    best = tv[0]
    spread = max(max(tv) - min(tv), 0.2 * width)
    new_lo = max(lo, min(tv) - spec.margin * spread)
    new_hi = min(hi, max(tv) + spec.margin * spread)
    flag: EdgeFlag | None = None
    hard_lo = fwd(r.min) if r.min is not None and (not log or r.min > 0) else -math.inf
    hard_hi = fwd(r.max) if r.max is not None else math.inf
    side = None
    if best - lo <= spec.edge * width and lo > hard_lo:
        new_lo, side = max(hard_lo, lo - spec.widen * width), "low"
    elif hi - best <= spec.edge * width and hi < hard_hi:
        new_hi, side = min(hard_hi, hi + spec.widen * width), "high"
    # A side held at the old edge keeps the old bound exactly: exp(log(1e-5)) is 9.99...e-6,
    # which would put the refined range a rounding error outside the coarse one.
    low = d.low if new_lo == lo else inv(new_lo)
    high = d.high if new_hi == hi else inv(new_hi)
    if isinstance(d, IntDistribution):
        low, high = math.floor(low + 1e-9), math.ceil(high - 1e-9)
        if low == high:
            # Optuna needs low < high; take one more step on whichever side the old range allows.
            if low - 1 >= d.low:
                low -= 1
            elif high + 1 <= d.high:
                high += 1
            else:
                return r, None
    if side is not None:
        flag = EdgeFlag(r.name, side, inv(best), (d.low, d.high), (low, high))
    return r.with_bounds(low, high), flag
