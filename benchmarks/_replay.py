"""Tabular replay: tuners run against a stored grid of learning curves instead of training.

A table (built by ``benchmarks/_tasks.py``) holds, for every configuration of a grid
and several seeds, the validation metric after every epoch of a full-length run
(cosine schedule over the full length). A tuner's trial is replayed by snapping
its configuration to the nearest grid point (in log space: every grid axis here is
log-spaced), drawing one of the table's seeds for it, and reporting the first
``epochs`` points of that curve: a truncated trial reads a prefix of the
full-length run, as tunekit's ``steps`` stages train one. The precedent is the
tabular benchmarks of HPO research (NAS-Bench-201, LCBench, HPOBench).

The measure is the *anytime quality of the pick*: after every finished trial, the
configuration the tuner would return now (its incumbent) and what that
configuration scores when trained again at full length with fresh seeds (the
mean final value over the table's other seeds), against the epochs the tuner has
spent so far. Every arm meets the same table, space and budget.

Arms (``ARMS``):
- ``tunekit``: the real ``tunekit.search.run`` (journal storage, stages,
  refinement, pruning) with the replay as its Python objective; the study is
  ``tunekit_study(table, design)``. Its incumbent is what ``summary.json`` calls
  best: the best complete trial of its searching stages.
- ``random``: Optuna's RandomSampler at full length, no pruning.
- ``optuna-tpe-hyperband``: Optuna's TPESampler with HyperbandPruner (epochs as the
  resource, 1 to the full length, reduction factor 3): what a user who skips
  tunekit would write.
- ``optuna-asha``: RandomSampler with SuccessiveHalvingPruner (ASHA), same rungs.
Optuna arms return ``study.best_trial`` (complete trials only).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml

#: Keys every table has (see benchmarks/_tasks.py, which writes them).
TABLE_KEYS = ("task", "metric", "direction", "epochs", "space", "seeds", "runs")


@dataclass(frozen=True)
class Table:
    """A grid of learning curves: ``curves[(config key, seed)]`` is one run's metric by epoch."""

    task: str
    metric: str
    direction: str
    epochs: int
    space: dict[str, list[float]]
    seeds: list[int]
    curves: dict[tuple[tuple[float, ...], int], list[float]]
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Table:
        """Reads and checks a table (:func:`check_table`)."""
        where = str(path)
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{where}: cannot read a table: {exc}") from None
        return cls.from_dict(data, where=where)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "table") -> Table:
        check_table(data, where)
        names = list(data["space"])
        curves = {
            (tuple(float(r["config"][n]) for n in names), int(r["seed"])): [
                float(v) for v in r["curve"]
            ]
            for r in data["runs"]
        }
        return cls(
            task=data["task"],
            metric=data["metric"],
            direction=data["direction"],
            epochs=int(data["epochs"]),
            space={n: [float(v) for v in vs] for n, vs in data["space"].items()},
            seeds=[int(s) for s in data["seeds"]],
            curves=curves,
            meta={k: v for k, v in data.items() if k not in TABLE_KEYS},
        )

    @property
    def names(self) -> list[str]:
        return list(self.space)

    @property
    def sign(self) -> float:
        return 1.0 if self.direction == "maximize" else -1.0

    def configs(self) -> list[tuple[float, ...]]:
        return sorted({k for k, _ in self.curves})

    def snap(self, params: dict[str, float]) -> tuple[float, ...]:
        """The grid point nearest ``params``, axis by axis in log space."""
        out = []
        for name, values in self.space.items():
            x = math.log(max(float(params[name]), 1e-300))
            out.append(min(values, key=lambda v: abs(math.log(v) - x)))
        return tuple(out)

    def curve(self, key: tuple[float, ...], seed: int) -> list[float]:
        return self.curves[(key, seed)]

    def quality(self, key: tuple[float, ...], seen_seed: int | None = None) -> float:
        """``key`` trained again at full length with fresh seeds: the mean final value over
        the table's seeds other than the one the tuner saw."""
        fresh = [s for s in self.seeds if s != seen_seed]
        return float(np.mean([self.curves[(key, s)][-1] for s in fresh]))

    def best_quality(self) -> float:
        """What an oracle that knew the table would pick (its mean over all seeds)."""
        return max(self.sign * self.quality(k) for k in self.configs()) * self.sign


def check_table(data: Any, where: str) -> None:
    """Checks a table is complete: every grid point and seed once, full curves of finite
    values in [0, 1]; raises ValueError with one line naming ``where``, what and where."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in TABLE_KEYS if k not in data]
    if missing:
        raise ValueError(f"{where}: missing top-level key(s) {', '.join(missing)}")
    if data["direction"] not in ("maximize", "minimize"):
        raise ValueError(f"{where}: direction {data['direction']!r} is not maximize or minimize")
    epochs, space, seeds = data["epochs"], data["space"], data["seeds"]
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"{where}: epochs is {epochs!r}; expected a whole number of 1 or more")
    if not isinstance(space, dict) or not space:
        raise ValueError(f"{where}: space must map each parameter to its grid values")
    for name, values in space.items():
        ok = isinstance(values, list) and len(values) >= 2 and values == sorted(values)
        if not ok or values[0] <= 0:
            # Snapping is in log space: every axis is a sorted list of positive values.
            raise ValueError(f"{where}: space.{name} must be a sorted list of >= 2 positive values")
    if not isinstance(seeds, list) or len(set(seeds)) < 2:
        raise ValueError(f"{where}: seeds: at least 2 (fresh seeds measure the pick)")
    names = list(space)
    expected = {(*p, int(s)) for p in itertools.product(*space.values()) for s in seeds}
    seen: set[tuple[Any, ...]] = set()
    for i, run in enumerate(data["runs"]):
        try:
            if sorted(run["config"]) != sorted(names):
                raise KeyError(f"config {sorted(run['config'])} for {names}")
            key = (*(float(run["config"][n]) for n in names), int(run["seed"]))
            values = run["curve"]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"{where}: runs[{i}] lacks {e}; each run needs config, seed and curve"
            ) from None
        if key not in expected:
            raise ValueError(f"{where}: runs[{i}] {key} is not a grid point and seed of the table")
        if key in seen:
            raise ValueError(f"{where}: runs[{i}] {key} appears twice")
        seen.add(key)
        if not isinstance(values, list) or len(values) != epochs:
            n = len(values) if isinstance(values, list) else values
            raise ValueError(f"{where}: runs[{i}] {key} has {n} curve values; expected {epochs}")
        bad = [v for v in values if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0)]
        if bad:  # NaN fails the range test too
            raise ValueError(
                f"{where}: runs[{i}] {key} has value {bad[0]!r}; expected finite values in [0, 1]"
            )
    if seen != expected:
        first = sorted(expected - seen)[0]
        at = " ".join(f"{n}={v:g}" for n, v in zip(names, first)) + f" seed={first[-1]}"
        raise ValueError(
            f"{where}: {len(expected - seen)} grid run(s) missing, e.g. {at}; "
            "rebuild with benchmarks/_tasks.py"
        )


# -- one search, replayed ------------------------------------------------------


@dataclass
class Record:
    """One finished trial, in the order the tuner ran it."""

    key: tuple[float, ...]
    seed: int
    epochs: int  # epochs of the curve it read (less than asked when pruned)
    value: float | None  # its final value when complete; None when pruned
    stage: int = 0  # for tunekit's incumbent rule: a later stage wins a tie


@dataclass
class Trace:
    """What one arm did on one search seed: per finished trial, epochs spent so far and the
    quality of the incumbent then (NaN before the first complete trial)."""

    arm: str
    seed: int
    spent: list[int]
    quality: list[float]
    records: list[Record]


#: Where a trial's curve comes from: (table, grid point, seed) to the metric after each
#: epoch of a full-length run, read lazily (a pruned trial stops reading, and a live
#: source stops training).
Source = Callable[[Table, tuple[float, ...], int], Iterator[float]]


def from_table(table: Table, key: tuple[float, ...], seed: int) -> Iterator[float]:
    return iter(table.curve(key, seed))


class Replay:
    """A tuner's objective: each trial snaps to the grid, draws one of the table's seeds and
    reads its curve from ``source`` (the table, or a real training)."""

    def __init__(self, table: Table, search_seed: int, source: Source = from_table) -> None:
        self.table = table
        self.source = source
        self.rng = np.random.default_rng([search_seed, 2_718])
        self.records: list[Record] = []

    def start(self, params: dict[str, float], stage: int = 0) -> tuple[Record, Iterator[float]]:
        key = self.table.snap(params)
        seed = int(self.rng.choice(self.table.seeds))
        rec = Record(key, seed, 0, None, stage)
        self.records.append(rec)
        return rec, self.source(self.table, key, seed)


def trace(arm: str, seed: int, table: Table, records: list[Record]) -> Trace:
    """The anytime curve of a run's records: after each, epochs so far and the incumbent's
    quality (the best complete trial's configuration, retrained with fresh seeds)."""
    spent, quality = [], []
    total = 0
    best: Record | None = None
    for r in records:
        total += r.epochs
        if r.value is not None and (
            best is None
            or (table.sign * r.value, r.stage) > (table.sign * (best.value or 0.0), best.stage)
        ):
            best = r
        spent.append(total)
        quality.append(table.quality(best.key, best.seed) if best is not None else math.nan)
    return Trace(arm, seed, spent, quality, records)


def _float_space(table: Table) -> dict[str, optuna.distributions.FloatDistribution]:
    return {
        n: optuna.distributions.FloatDistribution(vs[0], vs[-1], log=True)
        for n, vs in table.space.items()
    }


def run_optuna(
    table: Table,
    seed: int,
    budget: int,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    source: Source = from_table,
) -> list[Record]:
    """An Optuna ask/tell loop, epochs as the pruner's steps, until ``budget`` epochs are spent."""
    replay = Replay(table, seed, source)
    # A fixed name: Hyperband assigns a trial's bracket by hashing the study's name with the
    # trial's number, so Optuna's default (a random name) would make the arm irreproducible.
    study = optuna.create_study(
        study_name=f"replay-{seed}", direction=table.direction, sampler=sampler, pruner=pruner
    )
    dists = _float_space(table)
    spent = 0
    while spent < budget:
        trial = study.ask(dists)
        rec, values = replay.start(trial.params)
        value = math.nan
        pruned = False
        for e, value in enumerate(values, start=1):
            rec.epochs = e
            trial.report(value, e)
            if e < table.epochs and trial.should_prune():
                pruned = True
                break
        spent += rec.epochs
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            rec.value = value
            study.tell(trial, value)
    return replay.records


def _random(table: Table, seed: int, budget: int, source: Source) -> list[Record]:
    sampler = optuna.samplers.RandomSampler(seed=seed)
    return run_optuna(table, seed, budget, sampler, optuna.pruners.NopPruner(), source)


def _tpe_hyperband(table: Table, seed: int, budget: int, source: Source) -> list[Record]:
    pruner = optuna.pruners.HyperbandPruner(
        min_resource=1, max_resource=table.epochs, reduction_factor=3
    )
    return run_optuna(table, seed, budget, optuna.samplers.TPESampler(seed=seed), pruner, source)


def _asha(table: Table, seed: int, budget: int, source: Source) -> list[Record]:
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return run_optuna(table, seed, budget, optuna.samplers.RandomSampler(seed=seed), pruner, source)


# -- tunekit's staged search, replayed -------------------------------------------


def _median(startup: int, warmup: int) -> dict[str, Any]:
    return {"name": "median", "n_startup_trials": startup, "n_warmup_steps": warmup}


def staged(
    full: int,
    budget: int,
    *,
    coarse_len: int | None = None,
    coarse_share: float = 0.5,
    fill: float = 1.0,
    coarse_sampler: str = "qmc",
    coarse_pruner: dict[str, Any] | None = None,
    fine_sampler: str = "tpe",
    fine_pruner: dict[str, Any] | None = None,
    top_k: int = 3,
    margin: float = 0.25,
) -> list[dict[str, Any]]:
    """A coarse stage of trials cut at ``coarse_len`` epochs (a third of the full length by
    default) and a fine stage at full length over the ranges refined around the best
    ``top_k``. ``coarse_share`` of the budget goes to the coarse stage at nominal lengths;
    ``fill`` scales both stages' trial counts (pruned trials spend less than nominal)."""
    third = max(1, full // 3)
    clen = coarse_len or third
    coarse_pruner = coarse_pruner or _median(4, max(1, clen // 3))
    fine_pruner = fine_pruner or _median(3, third)
    return [
        {
            "name": "coarse",
            "sampler": coarse_sampler,
            "trials": max(4, round(fill * coarse_share * budget / clen)),
            "epochs": clen,
            "pruner": coarse_pruner,
        },
        {
            "name": "fine",
            "sampler": fine_sampler,
            "trials": max(2, round(fill * (1 - coarse_share) * budget / full)),
            "epochs": full,
            "refine": {"top_k": top_k, "margin": margin},
            "pruner": fine_pruner,
        },
    ]


def _late(full: int, budget: int, **kw: Any) -> list[dict[str, Any]]:
    """Coarse trials cut at two thirds of the length, and no comparison before a third."""
    args: dict[str, Any] = {
        "coarse_len": 2 * full // 3,
        "coarse_share": 0.4,
        "fill": 1.4,
        "coarse_pruner": _median(4, full // 3),
        "fine_pruner": _median(3, 2 * full // 3),
    }
    return staged(full, budget, **{**args, **kw})


#: tunekit's stage designs for a replay: each a function of (the table's full length in
#: epochs, the budget in epochs) giving the study's ``stages``. :data:`SHIPPED` is the shape
#: of studies/digits.yaml; ``early`` is the shape it had before this measure (coarse trials
#: cut at a third, pruned from the first epoch); the others are variants measured against them.
DESIGNS: dict[str, Callable[[int, int], list[dict[str, Any]]]] = {
    "early": lambda full, budget: staged(full, budget, coarse_share=0.25, fill=0.5 * 1.5),
    "fill": lambda full, budget: staged(full, budget, coarse_share=0.33, fill=1.5),
    "tpe": lambda full, budget: staged(
        full, budget, coarse_share=0.33, fill=1.5, coarse_sampler="tpe"
    ),
    "asha": lambda full, budget: staged(
        full,
        budget,
        coarse_share=0.33,
        fill=2.0,
        coarse_pruner={"name": "asha", "min_resource": 1, "reduction_factor": 3},
    ),
    "short": lambda full, budget: staged(
        full, budget, coarse_len=1, coarse_share=0.2, fill=1.3, coarse_pruner={"name": "none"}
    ),
    "hyperband": lambda full, budget: staged(
        full,
        budget,
        coarse_share=0.33,
        fill=2.0,
        fine_pruner={"name": "hyperband", "min_resource": 1, "reduction_factor": 3},
    ),
    "wide": lambda full, budget: staged(
        full, budget, coarse_share=0.33, fill=1.5, top_k=5, margin=0.5
    ),
    # Against the short-horizon bias: nothing is compared before two thirds of the length.
    "late": lambda full, budget: _late(full, budget),
    "late_tpe": lambda full, budget: _late(full, budget, coarse_sampler="tpe"),
    "late_fine": lambda full, budget: _late(full, budget, coarse_share=0.25),
    "late_hb": lambda full, budget: _late(
        full,
        budget,
        fill=1.8,
        fine_pruner={"name": "hyperband", "min_resource": full // 3, "reduction_factor": 3},
    ),
    "late_wide": lambda full, budget: staged(
        full,
        budget,
        coarse_len=2 * full // 3,
        coarse_share=0.4,
        fill=1.4,
        coarse_pruner=_median(4, full // 3),
        fine_pruner=_median(3, 2 * full // 3),
        top_k=5,
        margin=0.5,
    ),
    "full_late": lambda full, budget: staged(
        full,
        budget,
        coarse_len=full,
        coarse_share=0.5,
        fill=1.4,
        coarse_pruner=_median(4, 2 * full // 3),
        fine_pruner=_median(3, 2 * full // 3),
        top_k=5,
        margin=0.5,
    ),
}
#: The design the shipped studies have: full-length coarse trials, compared from two thirds.
SHIPPED = "full_late"


def tunekit_study(table: Table, design_name: str, budget: int, seed: int) -> dict[str, Any]:
    """The study file a replayed tunekit search runs (its objective is passed in)."""
    return {
        "name": "replay",
        "metric": table.metric,
        "direction": table.direction,
        "seed": seed,
        "space": {
            n: {"type": "log_uniform", "low": vs[0], "high": vs[-1]}
            for n, vs in table.space.items()
        },
        "stages": DESIGNS[design_name](table.epochs, budget),
        # One worker in this process: no second process can die, and heartbeats cost nothing.
        "liveness": {"heartbeat_s": 60, "grace_s": 600, "max_retry": 0},
    }


def run_tunekit(
    table: Table,
    seed: int,
    budget: int,
    source: Source = from_table,
    *,
    design_name: str = SHIPPED,
    workdir: Path | None = None,
) -> list[Record]:
    """The real ``tunekit.search.run`` with the replay as its Python objective."""
    import tunekit.search

    replay = Replay(table, seed, source)
    stage_index: dict[str, int] = {}

    def objective(params: dict[str, Any], trial: Any) -> float:
        stage = stage_index.setdefault(trial.stage, len(stage_index))
        rec, values = replay.start(params, stage)
        value = math.nan
        for e, value in zip(range(1, int(trial.epochs) + 1), values):
            rec.epochs = e
            trial.report(e, value)  # raises TrialPruned when the pruner stops it
        rec.value = value
        return value

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "replay.yaml"
        path.write_text(yaml.safe_dump(tunekit_study(table, design_name, budget, seed)))
        tunekit.search.run(path, objective=objective, out=Path(tmp) / "out")
    return replay.records


ARMS: dict[str, Callable[[Table, int, int, Source], list[Record]]] = {
    "tunekit": run_tunekit,
    "random": _random,
    "optuna-tpe-hyperband": _tpe_hyperband,
    "optuna-asha": _asha,
}


def run_arm(
    arm: str, table: Table, seed: int, budget: int, source: Source = from_table, **kw: Any
) -> Trace:
    """One arm on one search seed: its records and anytime curve (``kw``: tunekit's
    ``design_name``, shown in the arm's name)."""
    run = ARMS[arm]
    records = (
        run_tunekit(table, seed, budget, source, **kw)
        if run is run_tunekit
        else run(table, seed, budget, source)
    )
    name = f"{arm}:{kw['design_name']}" if kw.get("design_name", SHIPPED) != SHIPPED else arm
    return trace(name, seed, table, records)


# -- summaries over seeds ----------------------------------------------------------


def on_grid(t: Trace, grid: list[int]) -> list[float]:
    """The trace's quality at each budget of ``grid`` (the incumbent then; NaN before one)."""
    out = []
    for b in grid:
        q = math.nan
        for spent, quality in zip(t.spent, t.quality):
            if spent > b:
                break
            q = quality
        out.append(q)
    return out


def bands(traces: list[Trace], grid: list[int], sign: float = 1.0) -> dict[str, list[float]]:
    """Median and interquartile band over seeds at each budget; a seed with no incumbent
    yet counts as the worst (the statistic is NaN while half the seeds have none)."""
    rows = np.array([on_grid(t, grid) for t in traces], dtype=float)
    filled = np.where(np.isnan(rows), -np.inf * sign, rows)
    out = {}
    for name, q in (("q25", 25), ("median", 50), ("q75", 75)):
        # For a minimized metric the lower quartile of quality is the 75th percentile.
        v = np.percentile(filled, q if sign > 0 else 100 - q, axis=0, method="lower")
        out[name] = [float(x) if np.isfinite(x) else math.nan for x in v]
    return out


def epochs_to_reach(grid: list[int], curve: list[float], target: float, sign: float) -> float:
    """The first budget at which ``curve`` reaches ``target`` (inf if it never does)."""
    for b, q in zip(grid, curve):
        if math.isfinite(q) and sign * q >= sign * target - 1e-12:
            return float(b)
    return math.inf


def speedups(
    by_arm: dict[str, list[Trace]], grid: list[int], sign: float, *, baseline: str = "random"
) -> dict[str, dict[str, float]]:
    """Per arm, per-seed speed-ups over the baseline, with their median.

    For each seed, the target is the quality the baseline reaches with its whole budget
    on that seed; the speed-up is the epochs the baseline needed to first reach it
    over the epochs the arm needed (0 when the arm never reaches it). The median over
    seeds is the figure; ``ratio`` is its inverse (the arm's share of the epochs).
    ``curve_speedup`` is the same on the median curves: the epochs the baseline's median
    curve needs to first reach its own final value over the epochs the arm's median
    curve needs (the figure HPO papers plot; a seed of one arm and the same seed of
    another are unrelated runs, so the per-seed figure also carries the luck of the
    baseline's seed in its target). Also the normalized area between the median curves
    (arm minus baseline, in metric units averaged over the budget grid).
    """
    base = {t.seed: t for t in by_arm[baseline]}
    base_median = bands(by_arm[baseline], grid, sign)["median"]
    base_final = base_median[-1]
    base_need = epochs_to_reach(grid, base_median, base_final, sign)
    out: dict[str, dict[str, float]] = {}
    for arm, traces in by_arm.items():
        ups = []
        for t in traces:
            b = on_grid(base[t.seed], grid)
            target = b[-1]
            need_b = epochs_to_reach(grid, b, target, sign)
            need_a = epochs_to_reach(grid, on_grid(t, grid), target, sign)
            ups.append(need_b / need_a if math.isfinite(need_a) else 0.0)
        med = bands(traces, grid, sign)["median"]
        diffs = [
            sign * (a - b)
            for a, b in zip(med, base_median)
            if math.isfinite(a) and math.isfinite(b)
        ]
        up = float(np.median(ups))
        need = epochs_to_reach(grid, med, base_final, sign)
        out[arm] = {
            "curve_speedup": base_need / need if math.isfinite(need) else 0.0,
            "speedup": up,
            "ratio": 1.0 / up if up > 0 else math.inf,
            "reached": float(np.mean([u > 0 for u in ups])),
            "area": float(np.mean(diffs)) if diffs else math.nan,
        }
    return out
