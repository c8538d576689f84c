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
    tr = run_arm("tunekit", t, 3, budget)
    stages = tunekit_study(t, "default", budget, 3)["stages"]
    assert len(tr.records) == sum(s["trials"] for s in stages)
    # Coarse trials read at most the coarse length; pruned ones read less and have no value.
    coarse = tr.records[: stages[0]["trials"]]
    assert all(r.epochs <= stages[0]["epochs"] for r in coarse)
    assert any(r.value is None and r.epochs < stages[0]["epochs"] for r in coarse)
    assert tr.spent[-1] == sum(r.epochs for r in tr.records)
    # The fine stage refines around the best coarse points: it draws the best LR.
    assert any(r.key[0] == pytest.approx(0.1) for r in tr.records[stages[0]["trials"] :])
    assert tr.quality[-1] >= t.best_quality() - 0.03


@pytest.mark.parametrize("task", ["digits", "shapes"])
def test_seeded_tunekit_ends_ahead_of_random_search_on_the_stored_table(task: str) -> None:
    path = BENCH / "tables" / f"{task}.json"
    t = Table.load(path)
    budget = 27 * t.epochs
    seeds = [0, 1, 2, 3]
    by_arm = {arm: [run_arm(arm, t, s, budget) for s in seeds] for arm in ("tunekit", "random")}
    grid = list(range(1, budget + 1))
    ups = speedups(by_arm, grid, t.sign)
    med = {a: bands(ts, grid, t.sign)["median"] for a, ts in by_arm.items()}
    # Ahead on average over the budget, and at a third of it.
    assert ups["tunekit"]["area"] > 0, ups
    third = budget // 3 - 1
    assert med["tunekit"][third] >= med["random"][third], (
        med["tunekit"][third],
        med["random"][third],
    )
