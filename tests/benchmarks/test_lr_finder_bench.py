"""The LR benchmark's arithmetic: the best grid LR, the judges read off the grid, the replicates."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import lr_finder as bench  # noqa: E402

# Five seeds' top-1 at LRs 2x apart; seed "0" is best at 0.2, the mean at 0.1.
GRID = {
    "0.05": {"0": 0.80, "1": 0.82, "2": 0.81},
    "0.1": {"0": 0.90, "1": 0.93, "2": 0.92},
    "0.2": {"0": 0.91, "1": 0.80, "2": 0.86},
    "0.4": {"0": 0.50, "1": 0.40, "2": 0.45},
}


def _probe(refine: dict[str, float]) -> dict[str, Any]:
    return {
        "suggestions": {"steepest": 0.4, "valley": 0.01, "min10": 0.05},
        "falls": {"0.1": 0.9, "0.4": 0.5},
        "start": 0.2,
        "chosen": float(min(refine, key=lambda k: refine[k])),
        "chosen_by": "",
        "refine": refine,
        "wall_s": 1.0,
    }


def test_the_best_grid_lr_is_the_parabolas_peak_between_the_argmax_and_its_neighbours() -> None:
    grid = bench.mean_grid(GRID)
    best = bench.best_lr(grid)
    assert 0.05 < best < 0.2 and best != 0.1  # the peak leans toward the better neighbour
    assert bench.best_lr({0.1: 0.9, 0.2: 0.8}) == 0.1  # at the edge: the edge itself
    assert bench.own_grid_best(GRID, "0") == 0.2


def test_the_judges_read_the_refinements_three_lrs_off_the_grid() -> None:
    entry = {"grid": GRID, "probes": {"0": _probe({"0.05": 0.5, "0.1": 0.4, "0.2": 0.3})}}
    lines, found = bench.task_lines("digits_sgd", entry)
    rows = {name: ratio for name, ratio, _ in found}
    best = bench.best_lr(bench.mean_grid(GRID))
    assert rows["**tunekit** (refined)"] == pytest.approx(0.2 / best)  # the lowest loss
    own, mean = bench.JUDGES
    assert rows[own] == pytest.approx(0.2 / best)  # seed 0's own grid peaks at 0.2
    assert rows[mean] == pytest.approx(0.1 / best)  # the five-seed mean peaks at 0.1
    assert any(line.startswith(f"| {mean} |") for line in lines)
    # A probe seed the grid was not trained on has no own grid: those rows skip it.
    entry["probes"]["7"] = entry["probes"]["0"]
    lines, found = bench.task_lines("digits_sgd", entry)
    assert [n for n, _, _ in found].count(own) == 1
    assert [n for n, _, _ in found].count(mean) == 2
    assert "no grid of this seed" in next(line for line in lines if line.startswith(f"| {own} |"))


def test_a_replicate_judge_averages_over_sets_and_scores_a_diverged_run_last() -> None:
    one = {"0.1": [0.30, 0.95], "0.2": [0.25, 0.93], "0.4": [None, None]}
    two = {"0.1": [0.20, 0.96], "0.2": [0.40, 0.90], "0.4": [0.10, 0.99]}
    assert bench.replicate_pick([one], 0) == 0.2  # the lowest loss
    assert bench.replicate_pick([one], 1) == 0.1  # the highest top-1
    assert bench.replicate_pick([one, two], 0) == 0.1  # 0.25 against 0.325; 0.4 diverged once
    assert bench.replicate_pick([two], 0) == 0.4
    ties = {"0.1": [0.30, 0.95], "0.2": [0.20, 0.95]}
    assert bench.replicate_pick([ties], 1) == 0.2  # a top-1 tie goes to the lower loss


def test_the_replicate_table_counts_each_judge_on_each_set_and_on_the_means() -> None:
    sets = {
        "0": {"0.05": [0.5, 0.8], "0.1": [0.3, 0.92], "0.2": [0.2, 0.90]},
        "1": {"0.05": [0.5, 0.8], "0.1": [0.15, 0.93], "0.2": [0.3, 0.90]},
    }
    cache = {"digits_sgd": {"grid": GRID, "probes": {}, "replicates": {"0": sets}}}
    lines = bench.replicate_lines(cache, ["digits_sgd"], [0, 1], 2)  # seed 1 has no sets
    table = {line.split(" | ")[0]: line for line in lines if line.startswith(("| set", "| mean"))}
    # Set 0's loss keeps 0.2 (1.5x off or more), set 1's keeps 0.1 (within); top-1 keeps 0.1 twice.
    best = bench.best_lr(bench.mean_grid(GRID))
    assert not 1 / 1.5 <= 0.2 / best <= 1.5 and 1 / 1.5 <= 0.1 / best <= 1.5
    top1, loss = 1, 2  # the columns: the shipped judge first
    assert table["| set 0"].split(" | ")[loss].startswith("0 of 1")
    assert table["| set 1"].split(" | ")[loss].startswith("1 of 1")
    assert table["| set 0"].split(" | ")[top1].startswith("1 of 1")
    assert table["| mean of sets 0-1"].split(" | ")[loss].startswith("1 of 1")  # 0.225 vs 0.25
