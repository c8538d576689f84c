"""Search spaces: ranges that a trial samples from, and their refinement between stages.

A :class:`Range` is a plain value (it round-trips through JSON, so a stage's
ranges are stored in the study and every worker reads the same ones).
Refinement is a pure function of the previous ranges and the best trials.

A range with a condition (``when``) is sampled only in trials where the
categorical parameters it names took one of its values; the unconditional
ranges are sampled first, so a condition reads values of the same trial
(Optuna's define-by-run: a trial's parameters are the ones it suggested).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import optuna

from ._study import ParamSpec, RefineSpec


@dataclass(frozen=True)
class Range:
    """Where one recipe field's values come from in one stage."""

    name: str
    type: str  # log_uniform | uniform | int | categorical
    role: str  # scientific | nuisance
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    # (parameter, values it must take) pairs that all hold where this range is sampled.
    when: tuple[tuple[str, tuple[Any, ...]], ...] | None = None

    @classmethod
    def from_spec(cls, name: str, spec: ParamSpec) -> Range:
        return cls(
            name=name,
            type=spec.type,
            role=spec.role,
            low=spec.low,
            high=spec.high,
            step=spec.step,
            choices=tuple(spec.choices) if spec.choices is not None else None,
            min=spec.min,
            max=spec.max,
            when=_conditions(spec.when),
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Range:
        d = dict(d)
        if d.get("choices") is not None:
            d["choices"] = tuple(d["choices"])
        d["when"] = _conditions(d.get("when"))  # stored before conditions existed: none
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.choices is not None:
            d["choices"] = list(self.choices)
        d["when"] = {k: list(v) for k, v in self.when} if self.when is not None else None
        return d

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether this parameter is sampled in a trial whose other values are ``values``."""
        return all(k in values and values[k] in allowed for k, allowed in self.when or ())

    def suggest(self, trial: optuna.Trial) -> Any:
        """The value of this parameter for ``trial`` (Optuna's distributions do the sampling)."""
        if self.type == "categorical":
            assert self.choices is not None
            return trial.suggest_categorical(self.name, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1)
            )
        if self.type == "log_uniform":
            return trial.suggest_float(self.name, self.low, self.high, log=True)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step)

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            assert self.choices is not None
            return value in self.choices
        assert self.low is not None and self.high is not None
        return self.low <= value <= self.high

    def describe(self) -> str:
        if self.type == "categorical":
            text = "{" + ", ".join(str(c) for c in self.choices or ()) + "}"
        else:
            kind = "log " if self.type == "log_uniform" else ""
            text = f"{kind}[{self.low:.4g}, {self.high:.4g}]"
        for key, allowed in self.when or ():
            text += f" when {key} in {{{', '.join(str(v) for v in allowed)}}}"
        return text


Space = dict[str, Range]


def _conditions(when: Mapping[str, Any] | None) -> tuple[tuple[str, tuple[Any, ...]], ...] | None:
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
    categorical = {n: r for n, r in space.items() if r.type == "categorical" and r.choices}
    base0 = {n: r.choices[0] for n, r in categorical.items() if r.choices}
    bases = [base0]
    for name, r in categorical.items():
        assert r.choices is not None
        for choice in r.choices:
            base = {**base0, **{k: allowed[0] for k, allowed in r.when or ()}, name: choice}
            bases.append(base)
    points: list[dict[str, Any]] = []
    seen: set[str] = set()
    for base in bases:
        for end in ("low", "high"):
            point: dict[str, Any] = dict(base)
            for name, r in space.items():
                if r.type != "categorical":
                    value = r.low if end == "low" else r.high
                    point[name] = int(value or 0) if r.type == "int" else value
            point = {n: point[n] for n in space if n in point}
            point = only_active(space, point)
            key = repr(sorted(point.items(), key=lambda kv: kv[0]))
            if key not in seen:
                seen.add(key)
                points.append(point)
    return points


def space_from_specs(specs: dict[str, ParamSpec]) -> Space:
    """The sampled part of a study's space (fixed parameters become recipe overrides)."""
    return {name: Range.from_spec(name, s) for name, s in specs.items() if s.role != "fixed"}


def space_to_json(space: Space) -> dict[str, dict[str, Any]]:
    return {name: r.to_dict() for name, r in space.items()}


def space_from_json(data: dict[str, dict[str, Any]]) -> Space:
    return {name: Range.from_dict(d) for name, d in data.items()}


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
        elif r.type == "categorical":
            assert r.choices is not None
            kept = tuple(c for c in r.choices if c in values)
            new[name] = replace(r, choices=kept or r.choices)
        else:
            refined, flag = _refine_numeric(r, [float(v) for v in values], spec)
            new[name] = refined
            if flag is not None:
                flags.append(flag)
    return new, flags


def _refine_numeric(
    r: Range, values: list[float], spec: RefineSpec
) -> tuple[Range, EdgeFlag | None]:
    assert r.low is not None and r.high is not None
    log = r.type == "log_uniform"
    fwd = math.log if log else (lambda x: x)
    inv = math.exp if log else (lambda x: x)
    lo, hi = fwd(r.low), fwd(r.high)
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
    low, high = inv(new_lo), inv(new_hi)
    if r.type == "int":
        low, high = math.floor(low + 1e-9), math.ceil(high - 1e-9)
        if low == high:
            # Optuna needs low < high; take one more step on whichever side the old range allows.
            if low - 1 >= r.low:
                low -= 1
            elif high + 1 <= r.high:
                high += 1
            else:
                return r, None
    if side is not None:
        flag = EdgeFlag(r.name, side, inv(best), (r.low, r.high), (low, high))
    return replace(r, low=low, high=high), flag
