"""Search efficiency on digits: tunekit's coarse→fine search with pruning vs plain random search.

For each seed, both searches run the same number of trials over the same LR and
weight-decay ranges on the same recipe (digits, width-8 CNN). The baseline is
random search with no pruning, every trial trained at the full length with a
cosine schedule. The measure is the number of training epochs each search
spends (trials in the order they ran, epochs within a trial) until some trial
first reaches the random search's best validation top-1. The two searches
alternate which goes first from seed to seed.

Random search's trials are exchangeable (independent draws), so the order they
happened to run in is luck: besides the epochs as run, the script gives the
expected epochs over every order of the same trials, and uses that for the ratio.

The target is the maximum of many noisy evaluations (360 validation images), so
the script also measures how much of it is noise, and what no search could beat:
- reruns: each search's best configuration trained again with two other seeds
  (how good what each search picked really is);
- oracle: a search that only ever draws configurations that score at least
  what random search's best configuration scores under another seed (as good as
  the best, by the best's own reruns), taken from random search's own trials,
  in random order, and never spends an epoch elsewhere. Its expected epochs
  over random search's are a floor on the ratio for a search that cannot tell
  such configurations apart, which no search can from one run each.

How much of the gap pruning alone can close is bounded by its rungs: under
successive halving with rungs at r, 3r, 9r, ... R (reduction 3), a configuration
that does not win costs r + (3r - r)/3 + (9r - 3r)/9 + ... in expectation, 2.33
epochs of 9 with rungs at whole epochs (0.26 of a trial), 3 units of 27 with
rungs every third of an epoch (0.11). 'Pruning alone' is that cost put on random
search's own draws, ranked perfectly: the ratio a search reaches that samples no
better than random search does and never prunes a trial that would reach the
target. Below it, only better sampling helps.

Three designs (``--design``): ``epochs`` (the default) runs 27 trials of 9 epochs
with rungs at 1, 3 and 9 epochs, where pruning alone cannot reach 1/5 (0.26 of a
trial per losing configuration); ``steps`` runs 81 trials of 27 units of 8 steps
(0.36 epoch; 9.8 epochs in all) with rungs at 1, 3, 9 and 27 units, where it
could (0.11), at the price of a first rung inside the LR warmup; ``long`` runs
27 trials of 27 epochs with rungs at 1, 3, 9 and 27 epochs (0.11, the first rung
past warmup, three times the training).

Random search's sampler is seeded apart from tunekit's: a QMC or TPE sampler
draws its first trial(s) with a random sampler seeded as the study is, and the
same seed would hand both searches the same first configurations.

tunekit's stage design is one of ``--variants`` (the first is reported in full,
the others by their epochs on the same target): ``qmc`` (the default: 2/3 of the
trials coarse, quasi-random), ``tpe`` (the coarse stage sampled by TPE after a
random quarter; Optuna's TPE ranks pruned trials by how far they got, so with
ASHA this is BOHB's idea) and ``short`` (1/3 coarse, 2/3 fine). Compare designs
on other seeds (``--first-seed 10``) than the ones reported, so that the design
is not chosen on the figures it is judged by.

Also measured: the wall time of each search (tunekit's pruners compare the
EMA model, whose evaluations cost time that epochs do not count), and the tuner's own cost per trial on the default storage (a
journal file) — ask, sample, heartbeat, attributes, tell, with no training —
next to bare Optuna ask/tell on its in-memory storage.

    python benchmarks/search_efficiency.py                 # 5 seeds, writes RESULTS.md
    python benchmarks/search_efficiency.py --design steps  # 81 trials x 27 units of 8 steps
    python benchmarks/search_efficiency.py --design long   # 27 trials x 27 epochs
    python benchmarks/search_efficiency.py --seeds 1 --no-write
    python benchmarks/search_efficiency.py --jobs 2       # two seeds at a time (CPU)
    python benchmarks/search_efficiency.py --first-seed 10 --variants qmc,tpe,short

Runs on CUDA when a GPU is visible (train.device=cuda), else on the CPU.
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from _common import machine, write_section

REPO = Path(__file__).resolve().parents[1]

SPACE = {
    "optim.lr": {"type": "log_uniform", "low": 0.001, "high": 1.0},
    "optim.weight_decay": {"type": "log_uniform", "low": 1e-5, "high": 0.1},
}
RETRAIN_SEEDS = (1, 2)
REDUCTION = 3
# Digits' training split (1,437 images) at batch 64, last partial batch dropped.
STEPS_PER_EPOCH = 1437 // 64


@dataclass(frozen=True)
class Design:
    """How long a trial is and how finely the pruners see it.

    A unit is what the trainer calls an epoch: ``steps`` optimizer steps when
    given (``train.max_steps_per_epoch``; the sampler reshuffles every unit),
    else a whole pass over the data. Every unit ends in an evaluation, in both
    searches, so both get as many looks at the validation set per unit trained.
    """

    name: str
    trials: int
    units: int  # a full trial; the largest rung
    steps: int | None = None
    warmup_units: float = 0.5
    fine_warmup: int = 1  # the fine stage's median pruner compares from the unit after this

    @property
    def steps_per_unit(self) -> int:
        """Optimizer steps a unit: the pruners' resources count steps (trials report at them)."""
        return self.steps or STEPS_PER_EPOCH

    @property
    def epochs_per_unit(self) -> float:
        return self.steps / STEPS_PER_EPOCH if self.steps else 1.0

    @property
    def rungs(self) -> list[int]:
        out = [1]
        while out[-1] * REDUCTION < self.units:
            out.append(out[-1] * REDUCTION)
        return [*out, self.units]

    def train_set(self) -> list[str]:
        out = [f"schedule.warmup_epochs={self.warmup_units}"]
        return [*out, f"train.max_steps_per_epoch={self.steps}"] if self.steps else out


DESIGNS = {
    # Warmup in units: 1.5 units of 8 steps ~ the recipe's half epoch of 22 steps.
    "steps": Design("steps", trials=81, units=27, steps=8, warmup_units=1.5, fine_warmup=3),
    "epochs": Design("epochs", trials=27, units=9),
    # Rungs at 1, 3, 9 and 27 epochs: R/r = 27 with a first rung past warmup.
    "long": Design("long", trials=27, units=27),
}


def common_set(device: str, design: Design) -> list[str]:
    return [
        "model.width=8",
        f"train.device={device}",
        "diagnostics.enabled=false",
        *design.train_set(),
    ]


# Pruning compares the EMA model's top-1: under the cosine schedule the model's own early top-1
# ranks the configurations that end best near the bottom (benchmarks/early_ranking.py).
EMA = ["averaging.ema.decay=0.98", "averaging.ema.recalibrate_batches=10"]


@dataclass(frozen=True)
class Variant:
    """How tunekit's search splits its trials into stages, and how its coarse stage samples."""

    name: str
    coarse_sampler: str  # qmc, or tpe (BOHB-like: TPE also learns from the pruned trials)
    coarse_share: float  # of the trials, in the coarse stage; the rest are fine

    def coarse_trials(self, design: Design) -> int:
        return round(self.coarse_share * design.trials)

    def describe(self, design: Design) -> str:
        coarse = self.coarse_trials(design)
        sampler = "QMC" if self.coarse_sampler == "qmc" else "TPE, its first quarter random"
        return f"coarse {coarse} trials ({sampler}) -> fine {design.trials - coarse} trials"


VARIANTS = {
    "qmc": Variant("qmc", "qmc", 2 / 3),
    "tpe": Variant("tpe", "tpe", 2 / 3),
    "short": Variant("short", "qmc", 1 / 3),
}
# Random search's sampler seed is offset from tunekit's: tunekit seeds its first stage's sampler
# with the study seed, and a QMC or TPE sampler draws its first trial(s) with a random sampler so
# seeded; the same seed would give both searches the same first configurations.
RANDOM_SEED_OFFSET = 500


def tunekit_study(
    seed: int, device: str, design: Design, variant: Variant = VARIANTS["qmc"]
) -> dict[str, Any]:
    coarse = variant.coarse_trials(design)
    return {
        "name": f"bench_tk_{variant.name}_{seed}",
        "recipe": str(REPO / "recipes" / "digits.yaml"),
        "set": common_set(device, design),
        "seed": seed,
        "space": SPACE,
        "stages": [
            {
                "name": "coarse",
                "sampler": variant.coarse_sampler,
                "trials": coarse,
                "epochs": design.units,
                "set": EMA,
                "pruner": {
                    "name": "asha",
                    "min_resource": design.steps_per_unit,
                    "reduction_factor": REDUCTION,
                    "metric": "ema/val/top1",
                },
            },
            {
                "name": "fine",
                "sampler": "tpe",
                "trials": design.trials - coarse,
                "epochs": design.units,
                "refine": {"top_k": 3},
                "set": EMA,
                "pruner": {
                    "name": "median",
                    "n_startup_trials": 3,
                    "n_warmup_steps": design.fine_warmup * design.steps_per_unit,
                    "metric": "ema/val/top1",
                },
            },
        ],
    }


def random_study(seed: int, device: str, design: Design) -> dict[str, Any]:
    return {
        "name": f"bench_rs_{seed}",
        "recipe": str(REPO / "recipes" / "digits.yaml"),
        "set": common_set(device, design),
        "seed": seed + RANDOM_SEED_OFFSET,
        "space": SPACE,
        "stages": [
            {"name": "all", "sampler": "random", "trials": design.trials, "epochs": design.units}
        ],
    }


@dataclass
class Trial:
    params: dict[str, Any]
    curve: list[float]  # the model's val/top1 after each epoch it ran
    reported: list[float]  # what the trial reported to its pruner (tunekit's: the EMA model's)

    @property
    def best(self) -> float:
        return max(self.curve) if self.curve else -math.inf


def run_study(data: dict[str, Any], workdir: Path) -> list[Trial]:
    """Runs a study in this process; returns its trials in the order they ran."""
    from tunekit.search import open_search, run_worker
    from tunekit.search._report import read_curve

    path = workdir / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    ctx = open_search(str(path), out=workdir / data["name"])
    run_worker(ctx)
    # One worker: stage by stage, trial numbers in the order they ran. The curve is the model's
    # val/top1 from the trial's metrics.jsonl, not the values reported to the pruner: tunekit's
    # pruners compare the EMA model, random search's none, and both are measured on the model.
    return [
        Trial(
            dict(t.params),
            read_curve(t.user_attrs.get("run_dir"), "val/top1")["metric"],
            [t.intermediate_values[k] for k in sorted(t.intermediate_values)],
        )
        for _, t in ctx.search.all_trials()
    ]


def hit_epoch(curve: list[float], target: float) -> int | None:
    """The epoch (1-based) at which ``curve`` first reaches ``target``."""
    return next((i + 1 for i, v in enumerate(curve) if v >= target - 1e-12), None)


def epochs_as_run(trials: list[Trial], target: float) -> float:
    spent = 0
    for t in trials:
        hit = hit_epoch(t.curve, target)
        if hit is not None:
            return spent + hit
        spent += len(t.curve)
    return math.inf


def epochs_any_order(trials: list[Trial], target: float) -> float:
    """Expected epochs to the target over every order of ``trials`` (they are exchangeable).

    With m of n trials reaching it, (n - m) / (m + 1) of the others run first on
    average, each for its own length, then the first hitting trial up to its hit.
    """
    found = [(t, hit_epoch(t.curve, target)) for t in trials]
    hits = [h for _, h in found if h is not None]
    if not hits:
        return math.inf
    misses = [len(t.curve) for t, h in found if h is None]
    m, n = len(hits), len(trials)
    before = (n - m) / (m + 1) * (statistics.mean(misses) if misses else 0.0)
    return before + statistics.mean(hits)


def pruning_alone(trials: list[Trial], target: float, design: Design) -> float:
    """Expected units to the target for random search's own draws under ideal successive halving.

    Every configuration that does not reach the target stops at rung k with
    probability 3^-k (it costs the expected sum below); the first that reaches it
    is never pruned and runs to its hit. Same order argument as epochs_any_order.
    """
    hits = [h for t in trials if (h := hit_epoch(t.curve, target)) is not None]
    if not hits:
        return math.inf
    rungs = design.rungs
    cost = sum((rungs[k] - (rungs[k - 1] if k else 0)) / REDUCTION**k for k in range(len(rungs)))
    m, n = len(hits), len(trials)
    return (n - m) / (m + 1) * cost + statistics.mean(hits)


def retrain(params: dict[str, Any], seed: int, device: str, design: Design, workdir: Path) -> float:
    """Best val/top1 of the recipe trained with ``params`` and another seed."""
    from tunekit.config import load_recipe
    from tunekit.run import train

    overrides = [
        *common_set(device, design),
        *(f"{k}={v}" for k, v in params.items()),
        f"train.epochs={design.units}",
        f"seed={seed}",
    ]
    recipe = load_recipe(REPO / "recipes" / "digits.yaml", overrides)
    summary = train(recipe, out=tempfile.mkdtemp(dir=workdir, prefix="rerun-"), progress=False)
    return float(summary["best"]["value"])


def tuner_cost_ms(n: int = 200) -> tuple[float, float]:
    """(tunekit per-trial overhead on the journal file, bare Optuna in-memory ask/tell), in ms."""
    from tunekit.search import Heartbeat, LivenessSpec, StagedSearch, load_study, open_storage
    from tunekit.search._space import sample

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cost.yaml"
        data = random_study(0, "cpu", DESIGNS["epochs"])
        data["stages"][0]["trials"] = n
        path.write_text(yaml.safe_dump(data))
        study, _ = load_study(str(path))
        spec = LivenessSpec()
        search = StagedSearch(study, open_storage(None, Path(tmp), spec))
        stage = search.stages[0]
        space = search.space(stage)
        s = search.optuna_study(stage)
        started = time.perf_counter()
        for i in range(n):
            trial = s.ask()
            with Heartbeat(s, search.storage, search.trial_id(stage, trial.number), spec):
                sample(trial, space)
                trial.set_user_attr("run_dir", f"trial-{i}")
                trial.report(0.5, 1)
                trial.should_prune()
            s.tell(trial, 0.5)
        tk = (time.perf_counter() - started) / n * 1000
    bare = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    started = time.perf_counter()
    for _ in range(n):
        trial = bare.ask()
        trial.suggest_float("optim.lr", 1e-3, 1.0, log=True)
        trial.suggest_float("optim.weight_decay", 1e-5, 0.1, log=True)
        trial.report(0.5, 1)
        bare.tell(trial, 0.5)
    return tk, (time.perf_counter() - started) / n * 1000


def measure_seed(
    seed: int, device: str, design: Design, variants: list[Variant], work: Path
) -> dict[str, Any]:
    """Both searches on one seed (tunekit once per variant), the reruns and the floors.

    Every count is in units. The first variant's search is the one reported in
    full (its EMA count, its pick's reruns); the others give their epochs.
    """
    started = time.perf_counter()
    wall: dict[str, float] = {}

    def timed(name: str, data: dict[str, Any]) -> list[Trial]:
        t0 = time.perf_counter()
        out = run_study(data, work)
        wall[name] = time.perf_counter() - t0
        return out

    # Alternate which search runs first, so neither always gets a cold or warm machine.
    rs: list[Trial] = []
    if seed % 2 == 0:
        rs = timed("rs", random_study(seed, device, design))
    runs = {v.name: timed(v.name, tunekit_study(seed, device, design, v)) for v in variants}
    if seed % 2 == 1:
        rs = timed("rs", random_study(seed, device, design))
    target = max(t.best for t in rs)
    tk = runs[variants[0].name]
    best_rs = max(rs, key=lambda t: t.best)
    best_tk = max(tk, key=lambda t: t.best)
    reruns = [retrain(best_rs.params, s, device, design, work) for s in RETRAIN_SEEDS]
    tk_reruns = [retrain(best_tk.params, s, device, design, work) for s in RETRAIN_SEEDS]
    # As good as the best configuration, by that configuration's own reruns.
    repeat = min(*reruns, target)
    close = [t for t in rs if t.best >= repeat]
    return {
        "seed": seed,
        "target": target,
        "rs_as_run": epochs_as_run(rs, target),
        "rs_expected": epochs_any_order(rs, target),
        "rs_total": sum(len(t.curve) for t in rs),
        "tk_ema": epochs_as_run([Trial(t.params, t.reported, []) for t in tk], target),
        "repeat": repeat,
        "rs_repeat": epochs_any_order(rs, repeat),
        # Per stage design, in --variants order; the first is the tunekit search reported in full.
        "variants": {
            name: {
                "tk": epochs_as_run(trials, target),
                "total": sum(len(t.curve) for t in trials),
                "best": max(t.best for t in trials),
                "repeat": epochs_as_run(trials, repeat),
            }
            for name, trials in runs.items()
        },
        "close": len(close),
        "oracle": epochs_any_order(close, target),
        "pruning": pruning_alone(rs, target, design),
        "retrain": reruns,
        "tk_retrain": tk_reruns,
        "rs_wall": wall["rs"],
        "tk_wall": wall[variants[0].name],
        "wall_s": time.perf_counter() - started,
    }


def fmt(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


def report(
    rows: list[dict[str, Any]],
    device: str,
    design: Design,
    tk_ms: float,
    bare_ms: float,
    variants: list[Variant],
    jobs: int = 1,
) -> str:
    epu = design.epochs_per_unit

    def ep(units: float) -> str:  # a count of units, in epochs
        if math.isinf(units) or not design.steps:
            return fmt(units)
        return f"{units * epu:.1f}"

    if design.steps:
        unit = f"units of {design.steps} steps ({epu:.2f} epoch; the sampler reshuffles every unit)"
        length = f"{design.units} units ({design.units * epu:.1f} epochs)"
    else:
        unit, length = "epochs", f"{design.units} epochs"
    rungs = ", ".join(str(r) for r in design.rungs)
    lines = [
        f"Machine: {machine()} ({device}), {jobs} seed(s) at a time. "
        f"Date: {time.strftime('%Y-%m-%d')}.",
        f"Digits (1,437 training images, 360 validation), width-8 CNN; both searches "
        f"{design.trials} trials over log lr [1e-3, 1] and log wd [1e-5, 0.1], one worker; "
        f"trials of {length}, evaluated after each of its {unit}.",
        "Random search: no pruning, every trial full length, cosine, its sampler seeded apart "
        f"from tunekit's (seed + {RANDOM_SEED_OFFSET}). tunekit: {variants[0].describe(design)} "
        f"(coarse: ASHA rungs at {rungs} units, reduction {REDUCTION}; fine: TPE, ranges around "
        f"the coarse top 3, median pruner after unit {design.fine_warmup}); both pruners compare "
        "the EMA model's top-1 (decay 0.98, BN recalibrated on 10 batches), the trials are valued "
        "on the model's own.",
        "Measure: epochs spent until a trial first reaches random search's best val/top1 (the target),",
        "the model's own top-1 in both searches (from each trial's metrics.jsonl). 'tunekit's EMA model':",
        "the epochs until the EMA weights the same trials keep (and tunekit's pruners compare) reach it.",
        "Random's epochs are given as run and as expected over every order of its trials (they are",
        "exchangeable draws); the ratio uses the expected figure. Reruns: each search's best",
        "configuration trained again with seeds 1 and 2. Oracle: a search that only draws configurations",
        "scoring at least the lower rerun (from random search's own trials) and spends no epoch elsewhere.",
        "Pruning alone: random search's own draws under ideal successive halving on these rungs (each",
        "configuration that misses the target stops at rung k with probability 3^-k, none that reaches it",
        "is pruned): the ratio of a search that samples no better than random and ranks perfectly.",
        "",
        "| seed | target | random: as run / expected (of total) | tunekit (of total) "
        "| tunekit's EMA model | tunekit best | ratio | pruning alone | trials as good as the best "
        "| oracle ratio | reruns of random's best | reruns of tunekit's best |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def first(r: dict[str, Any]) -> dict[str, Any]:
        return r["variants"][variants[0].name]

    for r in rows:
        tk = first(r)
        ratio = tk["tk"] / r["rs_expected"]
        lines.append(
            f"| {r['seed']} | {r['target']:.4f} | {ep(r['rs_as_run'])} / {ep(r['rs_expected'])} "
            f"({ep(r['rs_total'])}) | {ep(tk['tk'])} ({ep(tk['total'])}) | {ep(r['tk_ema'])} "
            f"| {tk['best']:.4f} | {ratio:.3f} | {r['pruning'] / r['rs_expected']:.3f} "
            f"| {r['close']}/{design.trials} | {r['oracle'] / r['rs_expected']:.3f} "
            f"| {', '.join(f'{v:.4f}' for v in r['retrain'])} "
            f"| {', '.join(f'{v:.4f}' for v in r['tk_retrain'])} |"
        )
    ratios = [first(r)["tk"] / r["rs_expected"] for r in rows]
    ema = [r["tk_ema"] / r["rs_expected"] for r in rows]
    finite = [x for x in ratios if math.isfinite(x)]
    oracle = [r["oracle"] / r["rs_expected"] for r in rows]
    pruning = [r["pruning"] / r["rs_expected"] for r in rows]
    total = sum(first(r)["total"] for r in rows) / sum(r["rs_total"] for r in rows)
    wall = sum(r["tk_wall"] for r in rows) / sum(r["rs_wall"] for r in rows)
    drop = statistics.mean(r["target"] - statistics.mean(r["retrain"]) for r in rows)
    rs_pick = statistics.mean(v for r in rows for v in r["retrain"])
    tk_pick = statistics.mean(v for r in rows for v in r["tk_retrain"])
    lines += [
        "",
        f"Ratio (tunekit / random, expected): median {statistics.median(ratios):.3f} "
        f"({len(finite)}/{len(ratios)} seeds reached the target); with tunekit's EMA model "
        f"{statistics.median(ema):.3f}. Pruning alone: median {statistics.median(pruning):.3f}. "
        f"Oracle floor: median {statistics.median(oracle):.3f}. Goal <= 0.2, limit <= 0.333.",
        f"Epochs in all, tunekit / random: {total:.3f}; wall time in all (the EMA's evaluations "
        f"included): {wall:.3f}. Random's best configuration trained again "
        f"with other seeds scores {drop * 100:.2f} points below the target on average.",
        f"What each search picked, trained again with seeds 1 and 2 (mean over seeds and runs): "
        f"random's best configuration {rs_pick:.4f}, tunekit's {tk_pick:.4f}.",
        f"Tuner cost per trial on the default storage (journal file; ask, sample, heartbeat, attrs, "
        f"report, tell): {tk_ms:.1f} ms; bare Optuna ask/tell in memory: {bare_ms:.1f} ms.",
    ]
    rep = [first(r)["repeat"] / r["rs_repeat"] for r in rows]
    lines += [
        "",
        "A second measure, not the one the goal is set on: the target lowered to what random "
        "search's best configuration scores when trained again (the lower of its two reruns), so "
        "that a search counts when it finds a configuration as good as random's best really is, "
        "not when one evaluation matches the luckiest of random's.",
        "",
        "| seed | rerun score | random, expected | tunekit | ratio |",
        "|---|---|---|---|---|",
        *(
            f"| {r['seed']} | {r['repeat']:.4f} | {ep(r['rs_repeat'])} | {ep(first(r)['repeat'])} "
            f"| {first(r)['repeat'] / r['rs_repeat']:.3f} |"
            for r in rows
        ),
        "",
        f"Ratio at the rerun score: median {statistics.median(rep):.3f} "
        f"({sum(math.isfinite(x) for x in rep)}/{len(rep)} seeds reached it).",
    ]
    if len(variants) > 1:
        lines += ["", "Other stage designs of tunekit's search, on the same seeds and target:", ""]
        lines += [f"- `{v.name}`: {v.describe(design)}" for v in variants]
        lines += [
            "",
            "| seed | "
            + " | ".join(f"{v.name}: epochs (of total), best, to the rerun score" for v in variants)
            + " |",
            "|---|" + "---|" * len(variants),
        ]
        for r in rows:
            cells = [
                f"{ep(a['tk'])} ({ep(a['total'])}), {a['best']:.4f}, {ep(a['repeat'])}"
                for a in (r["variants"][v.name] for v in variants)
            ]
            lines.append(f"| {r['seed']} | " + " | ".join(cells) + " |")
        medians = []
        for v in variants:
            vr = [r["variants"][v.name]["tk"] / r["rs_expected"] for r in rows]
            reached = sum(math.isfinite(x) for x in vr)
            vt = sum(r["variants"][v.name]["total"] for r in rows)
            vrep = [r["variants"][v.name]["repeat"] / r["rs_repeat"] for r in rows]
            medians.append(
                f"`{v.name}` median ratio {statistics.median(vr):.3f} ({reached}/{len(vr)} "
                f"reached), at the rerun score {statistics.median(vrep):.3f}, epochs in all "
                f"{vt / sum(r['rs_total'] for r in rows):.3f}x random's"
            )
        lines += ["", "; ".join(medians) + "."]
    if device == "cpu":
        lines.append(
            "GPU figure: not taken (no GPU on this machine; the script uses CUDA when present)."
        )
    return "\n".join(lines)


def quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("tunekit.diagnostics").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def seed_job(
    seed: int, device: str, design: Design, variants: list[Variant], tmp: str, threads: int
) -> dict[str, Any]:
    """One seed in its own process (``--jobs``): both searches, reruns, the floors."""
    quiet()
    if threads:
        torch.set_num_threads(threads)
    work = Path(tmp) / f"seed{seed}"
    work.mkdir()
    r = measure_seed(seed, device, design, variants, work)
    tk = r["variants"][variants[0].name]
    print(
        f"seed {seed} ({design.name}, in units): target {r['target']:.4f}; random "
        f"{fmt(r['rs_as_run'])} as run, {fmt(r['rs_expected'])} expected; tunekit {fmt(tk['tk'])} "
        f"(best {tk['best']:.4f}, EMA {fmt(r['tk_ema'])}); pruning alone {fmt(r['pruning'])}; "
        f"oracle {fmt(r['oracle'])}; reruns random {r['retrain']} tunekit {r['tk_retrain']} "
        f"({r['wall_s']:.0f} s); "
        + ", ".join(f"{k} {fmt(v['tk'])} ({fmt(v['total'])})" for k, v in r["variants"].items()),
        flush=True,
    )
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--design", choices=sorted(DESIGNS), default="epochs")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds first-seed .. first-seed + seeds - 1 (compare stage designs on other seeds "
        "than the reported ones)",
    )
    ap.add_argument(
        "--variants",
        default="qmc",
        help=f"tunekit stage designs, comma-separated, the first reported in full: "
        f"{', '.join(VARIANTS)}",
    )
    ap.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="seeds run at once, each in its own process on one thread (CPU); epoch counts do "
        "not depend on it, wall times do",
    )
    ap.add_argument("--no-write", action="store_true", help="print only; do not update RESULTS.md")
    args = ap.parse_args()
    quiet()
    design = DESIGNS[args.design]
    names = args.variants.split(",")
    if unknown := [n for n in names if n not in VARIANTS]:
        ap.error(f"--variants: {unknown[0]!r} is not one of {', '.join(VARIANTS)}")
    variants = [VARIANTS[n] for n in names]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    threads = 1 if args.jobs > 1 else 0
    with tempfile.TemporaryDirectory() as tmp:
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        jobs = [(seed, device, design, variants, tmp, threads) for seed in seeds]
        if args.jobs > 1:
            with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
                rows = pool.starmap(seed_job, jobs)
        else:
            rows = [seed_job(*job) for job in jobs]
    tk_ms, bare_ms = tuner_cost_ms()
    text = report(rows, device, design, tk_ms, bare_ms, variants, args.jobs)
    print(text)
    if not args.no_write:
        suffix = "" if design.name == "epochs" else f" --design {design.name}"
        if args.first_seed:
            suffix += f" --first-seed {args.first_seed}"
        if names != ["qmc"]:
            suffix += f" --variants {args.variants}"
        write_section(f"search_efficiency (benchmarks/search_efficiency.py{suffix})", text)


if __name__ == "__main__":
    main()
