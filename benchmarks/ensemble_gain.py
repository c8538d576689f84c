"""Does a snapshot ensemble beat its best member? Measured over seeds, not asserted in a test.

The setting of ``tests/ensemble/test_digits_snapshots.py``: digits at their native 8x8 with
half the images held out (899 validation images), SmallCNN width 8 with BN, SGD with Nesterov
momentum, an SGDR schedule of 5 cycles of 2 epochs with a snapshot at the end of each, the
last 3 averaged (probabilities), EMA beside them. Each seed is one full run; the seed changes
the initial weights and the batch order, not the split.

Per seed the table gives the best member's top-1 and NLL, the ensemble's, the members' mean
NLL (which the ensemble's NLL cannot exceed, by Jensen's inequality), the final model and the
EMA model. The test asserts only what averaging probabilities guarantees; how often the
ensemble also beats its best member, and by how much, is read here.

Usage::

    python benchmarks/ensemble_gain.py                  # seeds 0-9, writes its RESULTS.md section
    python benchmarks/ensemble_gain.py --seeds 0 1 2 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine, write_seeds_section

from tunekit.config import Recipe, validate
from tunekit.run import train

TITLE = "Snapshot ensemble against its best member (benchmarks/ensemble_gain.py)"

RECIPE: dict[str, Any] = {
    "name": "ensemble_gain",
    "task": "classification",
    "data": {
        "name": "digits",
        "image_size": 8,
        "val_fraction": 0.5,
        "augment": {"random_crop_padding": 0},
    },
    "model": {"name": "small_cnn", "width": 8, "norm": "bn"},
    "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0005},
    "schedule": {"name": "sgdr", "cycle_epochs": 2, "warmup_epochs": 0.0},
    "train": {"epochs": 10, "batch_size": 32, "device": "cpu", "metric": "val/top1", "mode": "max"},
    "averaging": {"ema": {"decay": 0.99}, "snapshots": {"ensemble_last": 3}},
    "diagnostics": {"enabled": False},
}


def one_seed(seed: int, tmp: Path) -> dict[str, float]:
    """Trains the setting with ``seed``; the members', the ensemble's and the EMA's numbers."""
    recipe = validate(Recipe, {**RECIPE, "seed": seed, "output_dir": str(tmp / "runs")})
    started = time.perf_counter()
    summary = train(recipe, out=tmp / f"seed{seed}", progress=False)
    wall = time.perf_counter() - started
    final = summary["final"]
    index = json.loads((tmp / f"seed{seed}" / "snapshots" / "index.json").read_text())
    members = [r["metrics"] for r in index["snapshots"][-3:]]
    best = max(members, key=lambda m: (m["val/top1"], -m["val/loss"]))
    return {
        "seed": seed,
        "best_top1": best["val/top1"],
        "best_nll": min(m["val/loss"] for m in members),
        "mean_nll": statistics.fmean(m["val/loss"] for m in members),
        "ens_top1": final["snapshots/val/top1"],
        "ens_nll": final["snapshots/val/loss"],
        "final_top1": final["val/top1"],
        "ema_top1": final["ema/val/top1"],
        "ema_nll": final["ema/val/loss"],
        "wall_s": wall,
    }


def render(rows: list[dict[str, float]], n_val: int = 899) -> str:
    lines = [
        f"Machine: {machine()}",
        "",
        "Digits 8x8, 899 validation images (one image is 0.0011 of top-1); SmallCNN width 8, BN;"
        " SGDR 5 cycles of 2 epochs, the last 3 snapshots averaged in probability space; EMA"
        " decay 0.99. One run per seed.",
        "",
        "| seed | best member top-1 | ensemble top-1 | difference (images) | best member NLL "
        "| members' mean NLL | ensemble NLL | final model top-1 | EMA top-1 | EMA NLL |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = round((r["ens_top1"] - r["best_top1"]) * n_val)
        lines.append(
            f"| {r['seed']:.0f} | {r['best_top1']:.4f} | {r['ens_top1']:.4f} | {diff:+d} "
            f"| {r['best_nll']:.4f} | {r['mean_nll']:.4f} | {r['ens_nll']:.4f} "
            f"| {r['final_top1']:.4f} | {r['ema_top1']:.4f} | {r['ema_nll']:.4f} |"
        )
    n = len(rows)
    diffs = [round((r["ens_top1"] - r["best_top1"]) * n_val) for r in rows]
    at_least = sum(d >= 0 for d in diffs)
    nll_best = sum(r["ens_nll"] < r["best_nll"] for r in rows)
    nll_mean = sum(r["ens_nll"] < r["mean_nll"] for r in rows)
    lines += [
        "",
        f"Over {n} seeds: the ensemble's top-1 is at least its best member's in {at_least} "
        f"(median difference {statistics.median(diffs):+g} images, range {min(diffs):+d} to "
        f"{max(diffs):+d}); its NLL is below the best member's in {nll_best} and below the "
        f"members' mean in {nll_mean} (the last one is guaranteed). "
        f"Median wall time per run: {statistics.median(r['wall_s'] for r in rows):.1f} s.",
        "",
        "Reading: beating the best member is a tendency of this setting, not a law; "
        "tests/ensemble/test_digits_snapshots.py asserts only what averaging probabilities "
        "guarantees (NLL at most the members' mean, top-1 at least the share of images every "
        "member gets right) and checks the average by hand.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            rows.append(one_seed(seed, Path(tmp)))
            r = rows[-1]
            print(
                f"seed {seed}: best member {r['best_top1']:.4f} ensemble {r['ens_top1']:.4f} "
                f"NLL {r['ens_nll']:.4f} (members' mean {r['mean_nll']:.4f}) {r['wall_s']:.1f}s",
                flush=True,
            )
    body = render(rows)
    print(body)
    if not args.no_write:
        write_seeds_section(TITLE, "ensemble_gain.py", args.seeds, list(range(10)), body)


if __name__ == "__main__":
    main()
