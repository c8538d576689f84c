"""Search efficiency: the anytime quality of each tuner's pick against the epochs it spent.

The measure of HPO research (Hyperband, BOHB, ASHA, HPOBench): for each arm and
search seed, after every finished trial, the configuration the tuner would return
now and that configuration's quality when trained again at full length with fresh
seeds, against the cumulative epochs the tuner has spent. Median and
interquartile band over search seeds. Arms, space and full-length budget are the
same for all; see benchmarks/_replay.py for the arms and the replay.

With ``--replay`` every trial reads a stored learning-curve table
(benchmarks/tables/TASK.json, built by benchmarks/_tasks.py), so 50+ seeds per
arm cost seconds and carry no wall-clock noise. Without it, every trial trains
for real (benchmarks/_tasks.py's loop, the same one that built the table, on the
configuration snapped to the table's grid); the incumbent's fresh-seed quality is
still read from the table, which is exactly the cache of its retrainings.

Figures, per arm against random search (the baseline):
- speed-up, median curves: the epochs random search's median curve needs to first
  reach the quality it ends with, over the epochs the arm's median curve needs to
  reach it (0 when it never does); the goal for tunekit on the harder task is >= 3x
  (a third of the epochs), stretch 5x;
- speed-up per seed: the same for search seed i of the arm against seed i of random
  search, the median over seeds, and its inverse (the arm's share of the epochs).
  The two runs of a pair are unrelated, so this one also carries the luck of random
  search's seed in its target;
- reached: the share of seeds on which the arm reaches that quality at all;
- area: the mean over the budget grid of (arm's median curve - random's), in
  metric points: above 0 means ahead on average;
- the median curves at a few budgets.

    python benchmarks/search_efficiency.py --task shapes --replay            # 50 seeds
    python benchmarks/search_efficiency.py --task digits --replay --seeds 50
    python benchmarks/search_efficiency.py --task shapes --seeds 4           # live training
    python benchmarks/search_efficiency.py --task shapes --replay --arms tunekit \\
        --designs full_late,early,late --first-seed 100                       # compare designs
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from _common import machine, write_section
from _replay import (
    ARMS,
    DESIGNS,
    SHIPPED,
    Source,
    Table,
    Trace,
    bands,
    from_table,
    run_arm,
    speedups,
)

HERE = Path(__file__).resolve().parent
TABLES = HERE / "tables"
DEFAULT_ARMS = "tunekit,random,optuna-tpe-hyperband,optuna-asha"
#: Budgets (in epochs) at which the table shows the median curves, as fractions of the whole.
SHOW_AT = (1 / 27, 1 / 9, 1 / 3, 1.0)


def _grid(budget: int) -> list[int]:
    # Every epoch: the curves are step functions of the epochs spent.
    return list(range(1, budget + 1))


def run(
    table: Table, arms: list[str], seeds: list[int], budget: int, source: Source, designs: list[str]
) -> dict[str, list[Trace]]:
    """Every arm (tunekit once per design) on every seed, arm after arm."""
    by_arm: dict[str, list[Trace]] = {}
    for arm in arms:
        for kw in [{"design_name": d} for d in designs] if arm == "tunekit" else [{}]:
            started = time.perf_counter()
            traces = [run_arm(arm, table, s, budget, source, **kw) for s in seeds]
            by_arm[traces[0].arm] = traces
            took = time.perf_counter() - started
            print(f"{traces[0].arm}: {len(seeds)} seeds in {took:.1f} s", flush=True)
    return by_arm


def report(table: Table, by_arm: dict[str, list[Trace]], budget: int) -> tuple[str, dict[str, Any]]:
    grid = _grid(budget)
    sign = table.sign
    ups = speedups(by_arm, grid, sign)
    at = [max(1, round(f * budget)) for f in SHOW_AT]
    head = (
        "| arm | trials (median) | speed-up, median curves | speed-up per seed | epochs share per seed "
        "| reached | area (pts) | " + " | ".join(f"@{b} ep" for b in at) + " |"
    )
    rows = [head, "|" + "---|" * (7 + len(at))]
    for arm, traces in by_arm.items():
        med = bands(traces, grid, sign)
        trials = int(np.median([len(t.records) for t in traces]))
        u = ups[arm]
        share = "never" if not math.isfinite(u["ratio"]) else f"{u['ratio']:.2f}"
        cells = [
            f"{100 * med['median'][b - 1]:.2f} [{100 * med['q25'][b - 1]:.2f}, {100 * med['q75'][b - 1]:.2f}]"
            if math.isfinite(med["median"][b - 1])
            else "-"
            for b in at
        ]
        rows.append(
            f"| {arm} | {trials} | {u['curve_speedup']:.2f}x | {u['speedup']:.2f}x | {share} | "
            f"{100 * u['reached']:.0f}% | "
            f"{100 * u['area']:+.2f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(rows), ups


def figure(
    table: Table, by_arm: dict[str, list[Trace]], budget: int, path: Path, title: str
) -> None:
    """Median and interquartile band of each arm's anytime quality (PNG, matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = _grid(budget)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for arm, traces in by_arm.items():
        b = bands(traces, grid, table.sign)
        x = np.array(grid)
        (line,) = ax.plot(x, 100 * np.array(b["median"]), label=f"{arm} (n={len(traces)})")
        ax.fill_between(
            x,
            100 * np.array(b["q25"]),
            100 * np.array(b["q75"]),
            color=line.get_color(),
            alpha=0.15,
        )
    best = 100 * table.best_quality()
    ax.axhline(best, color="k", lw=0.8, ls=":", label=f"best configuration ({best:.2f})")
    ax.set_xscale("log")
    ax.set_xlabel("epochs spent by the tuner (log)")
    ax.set_ylabel(f"{table.metric} of the pick, retrained (fresh seeds), %")
    lo = np.nanpercentile(
        [100 * q for ts in by_arm.values() for t in ts for q in t.quality if math.isfinite(q)], 5
    )
    ax.set_ylim(lo, best + 0.15 * (best - lo))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="shapes", help="a table under benchmarks/tables/ (TASK.json)")
    p.add_argument("--table", type=Path, help="a table file (default: benchmarks/tables/TASK.json)")
    p.add_argument("--arms", default=DEFAULT_ARMS, help=f"comma-separated, of {sorted(ARMS)}")
    p.add_argument("--designs", default=SHIPPED, help=f"tunekit designs, of {sorted(DESIGNS)}")
    p.add_argument("--seeds", type=int, help="search seeds (default 50 with --replay, 4 live)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--budget", type=int, default=27, help="the budget in full-length trials")
    p.add_argument("--replay", action="store_true", help="read the table instead of training")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("tunekit").setLevel(logging.WARNING)

    table = Table.load(args.table or TABLES / f"{args.task}.json")
    arms = args.arms.split(",")
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        p.error(f"--arms: unknown {unknown}; known: {sorted(ARMS)}")
    designs = args.designs.split(",")
    if any(d not in DESIGNS for d in designs):
        p.error(f"--designs: known: {sorted(DESIGNS)}")
    n = args.seeds or (50 if args.replay else 4)
    seeds = list(range(args.first_seed, args.first_seed + n))
    budget = args.budget * table.epochs
    started = time.perf_counter()
    source: Source = from_table
    if not args.replay:
        from _tasks import live_source

        source = live_source
    by_arm = run(table, arms, seeds, budget, source, designs)
    wall = time.perf_counter() - started
    text, _ = report(table, by_arm, budget)
    mode = "replay" if args.replay else "live training"
    print(text)
    if args.no_write:
        return
    fig = HERE / f"search_efficiency_{table.task}{'' if args.replay else '_live'}.png"
    figure(table, by_arm, budget, fig, f"{table.task}: {mode}, {n} seeds, budget {budget} epochs")
    cmd = (
        f"python benchmarks/search_efficiency.py --task {table.task} --arms {args.arms}"
        f" --seeds {n}"
        + (f" --first-seed {args.first_seed}" if args.first_seed else "")
        + (" --replay" if args.replay else "")
        + (f" --designs {args.designs}" if args.designs != SHIPPED else "")
    )
    meta = table.meta
    body = (
        f"`{cmd}`\n\n{machine()}; {wall:.0f} s. Table: {len(table.configs())} configurations x "
        f"{len(table.seeds)} seeds, {table.epochs} epochs each"
        + (f", {meta['val_size']} validation images" if "val_size" in meta else "")
        + f"; best configuration {100 * table.best_quality():.2f}. Budget: {budget} epochs "
        f"({args.budget} full-length trials). Search seeds {seeds[0]}..{seeds[-1]}. Quality in "
        "points of the pick retrained at full length with the table's other seeds; cells give "
        "median [25%, 75%] over seeds. Figure: "
        f"[{fig.name}]({fig.name}).\n\n{text}\n"
    )
    title = f"search_efficiency: {table.task}, {mode}" + (
        f", designs {args.designs}" if args.designs != SHIPPED else ""
    )
    write_section(title, body)


if __name__ == "__main__":
    main()
