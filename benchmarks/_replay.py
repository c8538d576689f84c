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
        """Reads and checks a table; a malformed one raises ValueError with one line."""
        where = str(path)
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{where}: cannot read the table: {exc}") from None
        return cls.from_dict(data, where=where)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "table") -> Table:
        missing = [k for k in TABLE_KEYS if k not in data]
        if missing:
            raise ValueError(f"{where}: missing keys {missing}")
        if data["direction"] not in ("maximize", "minimize"):
            raise ValueError(f"{where}: direction {data['direction']!r} is not maximize/minimize")
        epochs = int(data["epochs"])
        space = {k: sorted(float(v) for v in vs) for k, vs in data["space"].items()}
        if not space or any(len(vs) < 2 or vs[0] <= 0 for vs in space.values()):
            raise ValueError(f"{where}: space: every axis needs >= 2 positive values")
        seeds = [int(s) for s in data["seeds"]]
        if len(seeds) < 2:
            raise ValueError(f"{where}: seeds: at least 2 (fresh seeds measure the pick)")
        curves: dict[tuple[tuple[float, ...], int], list[float]] = {}
        names = list(space)
        for i, run in enumerate(data["runs"]):
            cfg = run["config"]
            if sorted(cfg) != sorted(names):
                raise ValueError(f"{where}: runs[{i}].config has {sorted(cfg)}, not {names}")
            key = tuple(float(cfg[n]) for n in names)
            curve = [float(v) for v in run["curve"]]
            if len(curve) != epochs or not all(math.isfinite(v) for v in curve):
                raise ValueError(
                    f"{where}: runs[{i}].curve: {epochs} finite values needed, got {len(curve)}"
                )
            curves[(key, int(run["seed"]))] = curve
        grid = [
            tuple(p)
            for p in np.array(np.meshgrid(*space.values(), indexing="ij")).reshape(len(names), -1).T
        ]
        for key in grid:
            for s in seeds:
                if (tuple(float(v) for v in key), s) not in curves:
                    raise ValueError(f"{where}: runs: no run for {dict(zip(names, key))} seed {s}")
        meta = {k: v for k, v in data.items() if k not in ("runs", *TABLE_KEYS)}
        return cls(
            data["task"], data["metric"], data["direction"], epochs, space, seeds, curves, meta
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
    study = optuna.create_study(direction=table.direction, sampler=sampler, pruner=pruner)
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


#: tunekit's stage designs for a replay: each a function of (the table's full length in
#: epochs, the budget in epochs) giving the study's ``stages``. ``default`` is the shape of
#: the shipped studies (studies/digits.yaml); the others are the variants measured against it.
DESIGNS: dict[str, Callable[[int, int], list[dict[str, Any]]]] = {
    "default": lambda full, budget: staged(full, budget, coarse_share=0.25, fill=0.5 * 1.5),
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
}


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
    design_name: str = "default",
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
    name = f"{arm}:{kw['design_name']}" if kw.get("design_name", "default") != "default" else arm
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
    Also the normalized area between the median curves (arm minus baseline, in metric
    units averaged over the budget grid).
    """
    base = {t.seed: t for t in by_arm[baseline]}
    base_median = bands(by_arm[baseline], grid, sign)["median"]
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
        out[arm] = {
            "speedup": up,
            "ratio": 1.0 / up if up > 0 else math.inf,
            "reached": float(np.mean([u > 0 for u in ups])),
            "area": float(np.mean(diffs)) if diffs else math.nan,
        }
    return out
