"""The tabular replay that benchmarks/search_efficiency.py measures tuners with.

A table's format is checked on load; tunekit's real staged search runs against a
table through its Python objective; and, seeded, it ends ahead of random search
on the stored tables (deterministic: the table, the samplers and the draws of
seeds are all seeded).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

from _replay import (  # noqa: E402
    Table,
    Trace,
    bands,
    run_arm,
    speedups,
    tunekit_study,
)


def synthetic(epochs: int = 9, seeds: tuple[int, ...] = (0, 1, 2)) -> dict[str, Any]:
    """A grid whose best LR is 0.1 and weight decay 1e-3, with a little seed noise."""
    lrs = [float(10**x) for x in np.linspace(-3, 0, 7)]
    wds = [1e-5, 1e-3, 1e-1]
    runs = []
    for i, lr in enumerate(lrs):
        for j, wd in enumerate(wds):
            top = 0.9 - 0.08 * (math.log10(lr) + 1) ** 2 - 0.03 * abs(math.log10(wd) + 3) / 2
            for s in seeds:
                r = np.random.default_rng([s, i, j])
                curve = [
                    round(top * (1 - math.exp(-3 * e / epochs)) + float(r.normal(0, 0.005)), 5)
                    for e in range(1, epochs + 1)
                ]
                runs.append({"config": {"lr": lr, "weight_decay": wd}, "seed": s, "curve": curve})
    return {
        "task": "synthetic",
        "metric": "val/top1",
        "direction": "maximize",
        "epochs": epochs,
        "space": {"lr": lrs, "weight_decay": wds},
        "seeds": list(seeds),
        "runs": runs,
    }


def test_a_table_snaps_configurations_and_measures_the_pick_on_fresh_seeds() -> None:
    t = Table.from_dict(synthetic())
    assert len(t.configs()) == 21
    assert t.snap({"lr": 0.09, "weight_decay": 2e-3}) == (0.1, 1e-3)
    assert t.snap({"lr": 0.0004, "weight_decay": 1.0}) == (0.001, 0.1)  # past an end: the end
    assert t.snap({"lr": 0.002, "weight_decay": 1e-4})[0] == pytest.approx(10**-2.5)
    key = (0.1, 1e-3)
    finals = [t.curve(key, s)[-1] for s in (0, 1, 2)]
    assert t.quality(key, seen_seed=1) == pytest.approx((finals[0] + finals[2]) / 2)
    assert t.best_quality() == pytest.approx(np.mean(finals))


def test_tunekits_search_runs_on_the_table_through_its_python_objective() -> None:
    t = Table.from_dict(synthetic())
    budget = 12 * t.epochs
    # The earlier design: coarse trials cut at a third of the length, so that the coarse
    # stage's cut, its pruning and the fine stage's refinement each show in the records.
    tr = run_arm("tunekit", t, 3, budget, design_name="early")
    stages = tunekit_study(t, "early", budget, 3)["stages"]
    assert len(tr.records) == sum(s["trials"] for s in stages)
    # Coarse trials read at most the coarse length; pruned ones read less and have no value.
    coarse = tr.records[: stages[0]["trials"]]
    assert all(r.epochs <= stages[0]["epochs"] for r in coarse)
    assert any(r.value is None and r.epochs < stages[0]["epochs"] for r in coarse)
    assert tr.spent[-1] == sum(r.epochs for r in tr.records)
    # The fine stage refines around the best coarse points: it draws the best LR.
    assert any(r.key[0] == pytest.approx(0.1) for r in tr.records[stages[0]["trials"] :])
    assert tr.quality[-1] >= t.best_quality() - 0.03


def test_a_seeded_replay_of_tunekit_on_shapes_ends_ahead_of_random_search() -> None:
    """A regression check of the search on a fixed replay, not a claim about tuners in general
    (benchmarks/RESULTS.md has that, over 50 seeds): on these six seeds the shipped design
    (full-length coarse trials compared from two thirds of the length) is ahead of random
    search by 1.8 points on average over the budget and by 2.5 at a third of it; a search that
    stopped refining, pruned the wrong trials or picked the wrong incumbent would not be."""
    t = Table.load(BENCH / "tables" / "shapes.json")
    budget = 27 * t.epochs
    seeds = [0, 1, 2, 3, 4, 5]
    by_arm = {
        "tunekit": [run_arm("tunekit", t, s, budget) for s in seeds],
        "random": [run_arm("random", t, s, budget) for s in seeds],
    }
    grid = list(range(1, budget + 1))
    area = speedups(by_arm, grid, t.sign)["tunekit"]["area"]
    med = {a: bands(ts, grid, t.sign)["median"] for a, ts in by_arm.items()}
    third = budget // 3 - 1
    assert area > 0.005, area
    assert med["tunekit"][third] > med["random"][third] + 0.01, (
        med["tunekit"][third],
        med["random"][third],
    )


def test_speed_ups_on_the_median_curves_and_per_seed() -> None:
    grid = list(range(1, 9))

    def run(arm: str, seed: int, quality: list[float]) -> Trace:
        return Trace(arm, seed, grid, quality, [])

    # Random search ends at 0.8 (median) and first gets there at 6 epochs; the arm at 2.
    by_arm = {
        "random": [
            run("random", 0, [0.5, 0.5, 0.6, 0.6, 0.7, 0.8, 0.8, 0.8]),
            run("random", 1, [0.5, 0.6, 0.6, 0.7, 0.7, 0.8, 0.8, 0.9]),
            run("random", 2, [0.4, 0.5, 0.6, 0.6, 0.7, 0.7, 0.8, 0.8]),
        ],
        "arm": [
            run("arm", 0, [0.7, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]),
            run("arm", 1, [0.6, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]),
            run("arm", 2, [0.7, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]),
        ],
    }
    ups = speedups(by_arm, grid, 1.0)
    assert ups["arm"]["curve_speedup"] == pytest.approx(6 / 2)
    assert ups["random"]["curve_speedup"] == pytest.approx(1.0)
    # Per seed: seed 0's target 0.8 (random at 6, the arm at 2): 3x; seed 1's target 0.9 the
    # arm never reaches: 0; seed 2's 0.8 (random at 7, the arm at 2): 3.5x. Median 3x.
    assert ups["arm"]["speedup"] == pytest.approx(3.0)
    assert ups["arm"]["reached"] == pytest.approx(2 / 3)
