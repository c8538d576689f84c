"""Where each LR-suggestion rule lands against the best LR of a grid of short trainings.

For each task (a recipe plus overrides, every one CPU-sized):

1. a grid: 2 epochs of the recipe (no warmup, no augmentation, cosine decay) at
   LRs 2x apart, over ``--seeds`` (0 to 4); the score of an LR is the mean over the
   seeds of the final validation top-1. The best grid LR is the peak of a parabola
   through the best grid point and its two neighbours (in log LR; the point itself
   at the grid's edge), which moves less between seed sets than the grid's argmax;
2. the LR check exactly as ``tunekit lr-find`` runs it (``run_sanity`` with the LR
   check alone, every rule's suggestion added to the cross-check), once per
   ``--probe-seeds`` (0 to 5: the model's initialisation and the batches; 5 has no
   grid of its own);
3. per probe: each rule's suggestion read off its curve (``steepest``
   (torch-lr-finder), ``valley`` (fastai), ``min10`` (fastai's minimum)), the
   cross-check's largest fall among 1e-1..1e-4 and every rule, tunekit's start
   (the steepest suggestion, halved for Adam-family optimizers: what it chose
   before the refinement) and tunekit's chosen LR;
4. a yardstick for all of them: the best LR of one seed's own grid, against the
   five-seed best. No probe on one initialisation can be expected to do better
   than training the whole grid with that initialisation;
5. two judges for the refinement's own three LRs, read off the grid: the probe
   seed's own top-1 (a perfect judge of that one model) and the five-seed mean
   (the best those three LRs allow).

Reported per rule over every task and probe: how often it is within 1.5x of the
best grid LR (the goal), and the top-1 lost at it (the grid's best mean top-1
minus the top-1 interpolated in log LR at the rule's LR, clamped at the grid's
edges), mean and worst.

    python benchmarks/lr_finder.py                     # all tasks (about 2 h on 2 cores)
    python benchmarks/lr_finder.py --cache F.json --replicates 5   # then the seed sets
    python benchmarks/lr_finder.py --tasks digits_sgd --no-write
    python benchmarks/lr_finder.py --timing     # the range test's wall time against torch-lr-finder's

``--timing`` runs the same model, weights, batches, optimizer, sweep (1e-7 to 10,
100 iterations), smoothing (0.95) and divergence stop (4x) through tunekit's
``lr_range_test`` and torch-lr-finder's ``range_test`` + ``reset``, alternating
round by round, and reports the median wall time of each and both
steepest-slope suggestions (the figure in RESULTS.md's "LR range test vs
torch-lr-finder" section).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # torch-lr-finder draws a progress bar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch_lr_finder import LRFinder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median, write_section, write_seeds_section

from tunekit.config import DataConfig, Recipe, load_recipe
from tunekit.data import build_data
from tunekit.engine import effective_lr
from tunekit.models import SmallCNN
from tunekit.run import build_trainer
from tunekit.sanity import (
    RULES,
    SanityOptions,
    lr_range_test,
    preserved,
    probe_parts,
    refine_lr,
    run_sanity,
)
from tunekit.sanity._recipe import refine_length

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [0, 1, 2, 3, 4]
PROBE_SEEDS = [0, 1, 2, 3, 4, 5]
SGD_GRID = [0.025 * 2**k for k in range(7)]  # 0.025 .. 1.6
ADAM_GRID = [5e-4 * 2**k for k in range(7)]  # 5e-4 .. 0.032
SHORT = [
    "train.epochs=2",
    "schedule.warmup_epochs=0",
    "data.augment.random_crop_padding=0",
    "diagnostics.enabled=false",
]
ADAMW = [
    "optim.name=adamw",
    "optim.momentum=null",
    "optim.nesterov=null",
    "optim.weight_decay=0.01",
]

TINY_GN = {
    "builder": "tunekit.detection:tiny_resnet",
    "kwargs": {"width": 8, "norm": "gn", "in_channels": 1},
}
TINY_BN = {
    "builder": "tunekit.detection:tiny_resnet",
    "kwargs": {"width": 8, "norm": "bn", "in_channels": 1},
}
SHAPES = "data.kwargs={train: 400, val: 1000, size: 64, seed: 0, crop_size: 32}"
ADAM = ["optim.name=adam", "optim.momentum=null", "optim.nesterov=null", "optim.weight_decay=0"]

#: name -> (recipe file, overrides, model section replacing the recipe's or None, LR grid, what).
#: The tasks came in four rounds, each made to test what the rounds before it chose: the first
#: three; digits_tiny_resnet_adamw (a check of the Adam-family halving); the three h_ tasks (a
#: check of a fixed factor on the suggestion); the three h2_ tasks (a check of a refinement
#: that looked below the start only); the three h3_ tasks (a check of a refinement that looks
#: both ways); the three h4_ tasks, made after the shipped refinement was fixed, a check of it.
TASKS: dict[str, tuple[str, list[str], dict[str, Any] | None, list[float], str]] = {
    "digits_sgd": (
        "recipes/digits.yaml",
        [],
        None,
        SGD_GRID,
        "digits 16x16, SmallCNN width 16 (BN), SGD momentum 0.9 Nesterov, wd 5e-4, batch 64",
    ),
    "digits_adamw": (
        "recipes/digits.yaml",
        ADAMW,
        None,
        ADAM_GRID,
        "digits 16x16, SmallCNN width 16 (BN), AdamW wd 0.01, batch 64",
    ),
    "digits_tiny_resnet": (
        "recipes/digits.yaml",
        [],
        TINY_GN,
        [0.00625, 0.0125, *SGD_GRID],
        "digits 16x16, TinyResNet width 8 (GroupNorm), SGD momentum 0.9 Nesterov, wd 5e-4, batch 64",
    ),
    "digits_tiny_resnet_adamw": (
        "recipes/digits.yaml",
        ADAMW,
        TINY_GN,
        ADAM_GRID,
        "digits 16x16, TinyResNet width 8 (GroupNorm), AdamW wd 0.01, batch 64",
    ),
    "h_sgd_b16": (
        "recipes/digits.yaml",
        ["train.batch_size=16"],
        None,
        [0.00625 * 2**k for k in range(7)],
        "digits 16x16, SmallCNN width 16 (BN), SGD momentum 0.9 Nesterov, batch 16",
    ),
    "h_adamw_w32": (
        "recipes/digits.yaml",
        [*ADAMW, "model.width=32"],
        None,
        ADAM_GRID,
        "digits 16x16, SmallCNN width 32 (BN), AdamW wd 0.01, batch 64",
    ),
    "h_tiny_bn_sgd": (
        "recipes/digits.yaml",
        [],
        TINY_BN,
        SGD_GRID,
        "digits 16x16, TinyResNet width 8 (BN), SGD momentum 0.9 Nesterov, batch 64",
    ),
    "h2_resnet18_sgd": (
        "recipes/digits.yaml",
        ["model.name=resnet18"],
        None,
        [0.0125 * 2**k for k in range(-3, 7)],
        "digits 16x16, torchvision ResNet-18 (BN), SGD momentum 0.9 Nesterov, batch 64",
    ),
    "h2_adam_tiny_bn": (
        "recipes/digits.yaml",
        ADAM,
        TINY_BN,
        [2.5e-4 * 2**k for k in range(9)],
        "digits 16x16, TinyResNet width 8 (BN), Adam, no weight decay, batch 64",
    ),
    "h2_sgd_b128_m0": (
        "recipes/digits.yaml",
        ["train.batch_size=128", "optim.momentum=0", "optim.nesterov=false"],
        None,
        [0.05 * 2**k for k in range(7)],
        "digits 16x16, SmallCNN width 16 (BN), plain SGD (no momentum), batch 128",
    ),
    "h3_shapes_adamw": (
        "recipes/shapes_classifier.yaml",
        [SHAPES, "optim.weight_decay=0.01"],
        None,
        ADAM_GRID,
        "shapes crops 32x32 (400 training images), TinyResNet width 16 (GN), AdamW wd 0.01, batch 64",
    ),
    "h3_shapes_sgd": (
        "recipes/shapes_classifier.yaml",
        [SHAPES, "optim.name=sgd", "optim.momentum=0.9", "optim.weight_decay=0.0005"],
        None,
        [0.00625 * 2**k for k in range(7)],
        "shapes crops 32x32 (400 training images), TinyResNet width 16 (GN), SGD momentum 0.9, batch 64",
    ),
    "h3_digits_w8_b32": (
        "recipes/digits.yaml",
        [
            "model.width=8",
            "train.batch_size=32",
            "optim.nesterov=false",
            "optim.weight_decay=0.0001",
        ],
        None,
        [0.0125 * 2**k for k in range(7)],
        "digits 16x16, SmallCNN width 8 (BN), SGD momentum 0.9, wd 1e-4, batch 32",
    ),
    "h4_shapes_adam_bn": (
        "recipes/shapes_classifier.yaml",
        ["data.kwargs={train: 800, val: 1000, size: 64, seed: 0, crop_size: 32}", *ADAM],
        {"builder": "tunekit.detection:tiny_resnet", "kwargs": {"width": 16, "norm": "bn"}},
        [2.5e-4 * 2**k for k in range(8)],
        "shapes crops 32x32 (800 training images), TinyResNet width 16 (BN), Adam, batch 64",
    ),
    "h4_digits_dropout_adamw_b32": (
        "recipes/digits.yaml",
        [*ADAMW, "optim.weight_decay=0.05", "model.dropout=0.2", "train.batch_size=32"],
        None,
        ADAM_GRID,
        "digits 16x16, SmallCNN width 16 (BN, dropout 0.2), AdamW wd 0.05, batch 32",
    ),
    "h4_shapes_sgd_b128": (
        "recipes/shapes_classifier.yaml",
        [
            "data.kwargs={train: 1600, val: 1000, size: 64, seed: 0, crop_size: 32}",
            "train.batch_size=128",
            "optim.name=sgd",
            "optim.momentum=0.9",
            "optim.weight_decay=0.0001",
        ],
        None,
        [0.0125 * 2**k for k in range(7)],
        "shapes crops 32x32 (1600 training images), TinyResNet width 16 (GN), SGD momentum 0.9, "
        "batch 128",
    ),
}


def recipe(task: str, extra: list[str]) -> Recipe:
    path, overrides, model, _, _ = TASKS[task]
    r = load_recipe(ROOT / path, [*SHORT, *overrides, *extra])
    if model is None:
        return r
    data = r.model_dump(exclude_unset=True)
    data["model"] = model
    return Recipe.model_validate(data)


def train_grid(task: str, seeds: list[int], done: dict[str, dict[str, float]]) -> None:
    """Fills ``done`` (LR -> seed -> final top-1) with the grid's missing trainings."""
    for lr in TASKS[task][3]:
        for seed in seeds:
            cell = done.setdefault(repr(lr), {})
            if str(seed) in cell:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                trainer, _ = build_trainer(
                    recipe(task, [f"optim.lr={lr}", f"seed={seed}"]), Path(tmp), progress=False
                )
                trainer.train()
            cell[str(seed)] = float(trainer.history[-1]["val/top1"])
            print(f"  {task} lr {lr:.3g} seed {seed}: top1 {cell[str(seed)]:.3f}", flush=True)


def probe(task: str, seed: int) -> dict[str, Any]:
    """The LR check as `tunekit lr-find` runs it, every rule's suggestion in the cross-check."""
    r = recipe(task, [f"seed={seed}"])
    started = time.perf_counter()
    report = run_sanity(r, options=SanityOptions(checks=("lr",), cross_check_rules=tuple(RULES)))
    assert report.lr is not None
    rt, cc = report.lr.range_test, report.lr.cross_check
    lr_of = report.recipe_lr
    return {
        "suggestions": {k: lr_of(v) if v else None for k, v in rt.suggestions.items()},
        "falls": {str(lr_of(r.lr)): (-math.inf if r.diverged else r.fall) for r in cc.runs},
        "start": lr_of(report.lr.start) if report.lr.start else None,
        "chosen": lr_of(report.lr.chosen) if report.lr.chosen else None,
        "chosen_by": report.lr.chosen_by,
        "refine": None
        if report.lr.refine is None
        else {str(lr_of(r.lr)): r.score for r in report.lr.refine.runs},
        "refine_top1": None
        if report.lr.refine is None
        else {str(lr_of(r.lr)): r.held_out_top1 for r in report.lr.refine.runs},
        "wall_s": time.perf_counter() - started,
    }


def replicate(task: str, seed: str, rep: int, lrs: list[float]) -> dict[str, list[float | None]]:
    """The refinement at one check's three LRs (recipe units) on another seed set, as
    ``run_sanity`` runs it: set 0 is the probe's own seed (it repeats the probe's refinement),
    set r the seed plus 100 r (another initialisation and batch order). LR -> [held-out loss,
    held-out top-1]; a diverged run's loss is None."""
    r = recipe(task, [f"seed={int(seed) + 100 * rep}"])
    parts = probe_parts(r)
    # Recipe units per optimizer unit: the probes' optimizer takes the linear scaling rule's LR.
    scale = r.optim.lr / effective_lr(r.optim, r.train.batch_size)
    with preserved(parts.model, None, [parts.val_loader]):
        held = list(itertools.islice(iter(parts.val_loader), SanityOptions().held_out_batches))
    low, mid, high = sorted(lrs)
    res = refine_lr(
        parts.model,
        parts.optimizer,
        parts.loader,
        start=mid / scale,
        shares=[low / mid, 1.0, high / mid],
        num_iter=refine_length(r, parts.loader),
        held_out=held,
        objective=parts.objective,
    )
    return {
        repr(run.lr * scale): [None if run.diverged else run.held_out, run.held_out_top1]
        for run in res.runs
    }


#: How the replicate sets are judged: the held-out top-1, a tie to the lower loss (what the
#: refinement keeps), and the held-out loss, each read off one set or averaged over the first k.
REPLICATE_JUDGES = {"held-out top-1 (shipped)": 1, "held-out loss": 0}


def replicate_pick(sets: list[dict[str, list[float | None]]], judge: int) -> float:
    """The LR ``judge`` keeps over ``sets`` (its score averaged over them)."""

    def key(lr: str) -> tuple[float, float]:
        # A diverged run scores an infinite loss and a top-1 of zero.
        loss = [math.inf if (x := s[lr][0]) is None else x for s in sets]
        top1 = [0.0 if s[lr][0] is None or (y := s[lr][1]) is None else y for s in sets]
        mean_loss = float(np.mean(loss))
        return (mean_loss, 0.0) if judge == 0 else (-float(np.mean(top1)), mean_loss)

    return float(min(sets[0], key=key))


def replicate_lines(cache: dict[str, Any], tasks: list[str], seeds: list[int], n: int) -> list[str]:
    """The replicate section: each judge on each seed set, and averaged over the first k sets."""
    found: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for task in tasks:
        entry = cache[task]
        grid = mean_grid(entry["grid"])
        best, top = best_lr(grid), max(grid.values())
        for seed in seeds:
            by_set = entry.get("replicates", {}).get(str(seed))
            if by_set is None:
                continue
            sets = [by_set[str(r)] for r in range(n)]
            for name, judge in REPLICATE_JUDGES.items():
                picks_by_label = {f"set {r}": [sets[r]] for r in range(n)} | {
                    f"mean of sets 0-{r}": sets[: r + 1] for r in range(1, n)
                }
                for label, chosen_from in picks_by_label.items():
                    chosen = replicate_pick(chosen_from, judge)
                    row = found.setdefault((name, label), [])
                    row.append((chosen / best, top - accuracy_at(chosen, grid)))
    checks = len(next(iter(found.values()), []))
    lines = [
        f"{checks} checks ({len(tasks)} tasks, LR-check seeds {seeds}), each one's three "
        f"refinement LRs trained again on {n} seed sets: set 0 is the check's own seed (its "
        "refinement again), set r the seed plus 100 r (another initialisation and batch order). "
        "Each cell: within 1.5x of the best grid LR, top-1 lost mean / worst (points).",
        "",
        "| seed sets | " + " | ".join(REPLICATE_JUDGES) + " |",
        "|---|" + "---|" * len(REPLICATE_JUDGES),
    ]
    for label in dict.fromkeys(label for _, label in found):
        cells = []
        for name in REPLICATE_JUDGES:
            row = found[(name, label)]
            within = sum(1 / 1.5 <= ratio <= 1.5 for ratio, _ in row)
            losts = [lost for _, lost in row]
            cells.append(
                f"{within} of {len(row)}, {100 * np.mean(losts):.2f} / {100 * max(losts):.2f}"
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def largest_fall(falls: dict[str, float]) -> float | None:
    """The cross-check's pick: the LR whose short run fell most (which must be a fall)."""
    best = max(falls, key=lambda k: falls[k], default=None)
    return float(best) if best is not None and falls[best] > 0 else None


def picks(res: dict[str, Any]) -> dict[str, float | None]:
    """Every rule's LR for one probe, in the order of the tables."""
    out: dict[str, float | None] = {f"`{k}`": v for k, v in res["suggestions"].items()}
    out["cross-check's largest fall (1e-1..1e-4 and every rule)"] = largest_fall(res["falls"])
    out["tunekit's start (`steepest`, halved for Adam-family)"] = res["start"]
    out["**tunekit** (refined)"] = res["chosen"]
    return out


def mean_grid(cells: dict[str, dict[str, float]]) -> dict[float, float]:
    return {float(lr): float(np.mean(list(v.values()))) for lr, v in cells.items()}


def best_lr(grid: dict[float, float]) -> float:
    """The peak of a parabola (in log LR) through the best grid point and its neighbours."""
    lrs = sorted(grid)
    i = int(np.argmax([grid[lr] for lr in lrs]))
    if i in (0, len(lrs) - 1):
        return lrs[i]
    x = np.log2(lrs[i - 1 : i + 2])
    a, b, _ = np.polyfit(x, [grid[lr] for lr in lrs[i - 1 : i + 2]], 2)
    return float(2 ** np.clip(-b / (2 * a), x[0], x[2]))


def accuracy_at(lr: float, grid: dict[float, float]) -> float:
    lrs = sorted(grid)
    return float(np.interp(math.log2(lr), np.log2(lrs), [grid[k] for k in lrs]))


def own_grid(cells: dict[str, dict[str, float]], seed: str) -> dict[float, float]:
    """One seed's own grid: LR -> that seed's final top-1."""
    return {float(lr): v[seed] for lr, v in cells.items() if seed in v}


def own_grid_best(cells: dict[str, dict[str, float]], seed: str) -> float:
    """The best LR of one seed's own grid."""
    scores = own_grid(cells, seed)
    return max(scores, key=lambda lr: scores[lr])


#: Two judges the refinement cannot have, each choosing among the refinement's own three LRs:
#: the probe seed's own 2-epoch top-1 (what a perfect judge of the user's one model could
#: do) and the five-seed mean (what the three LRs allow at best). Between them and tunekit's
#: row: how much is lost to the held-out judge, and how much to one seed's noise.
JUDGES = {
    "the refinement's three LRs judged by the seed's own 2-epoch top-1": "own",
    "the refinement's three LRs judged by the five-seed mean": "mean",
}


def judged(entry: dict[str, Any], seed: str, judge: str) -> float | None:
    """The refinement LR that ``judge`` ("own" or "mean") scores best, None without one."""
    refine = entry["probes"][seed]["refine"]
    if not refine:
        return None
    grid = own_grid(entry["grid"], seed) if judge == "own" else mean_grid(entry["grid"])
    return max(map(float, refine), key=lambda lr: accuracy_at(lr, grid))


def task_lines(
    task: str, entry: dict[str, Any]
) -> tuple[list[str], list[tuple[str, float, float]]]:
    """The task's section, and (rule, ratio to the best LR, top-1 lost) for every probe."""
    grid = mean_grid(entry["grid"])
    best = best_lr(grid)
    top = max(grid.values())
    argmax = max(grid, key=lambda lr: grid[lr])
    edge = " (at the grid's edge)" if argmax in (min(grid), max(grid)) else ""
    seeds = sorted(entry["probes"], key=int)
    lines = [
        f"### {task}: {TASKS[task][4]}",
        "",
        "Grid (mean top-1 over the seeds): "
        + ", ".join(f"{lr:.3g}: {grid[lr]:.1%}" for lr in sorted(grid))
        + f". Best LR **{best:.3g}** (argmax {argmax:.3g}{edge}, {top:.1%}). LR check: "
        + ", ".join(f"{entry['probes'][s]['wall_s']:.0f} s" for s in seeds)
        + ".",
        "",
        "| rule | " + " | ".join(f"probe seed {s}: LR, / best, top-1 lost" for s in seeds) + " |",
        "|---|" + "---|" * len(seeds),
    ]
    found: list[tuple[str, float, float]] = []
    names = list(picks(entry["probes"][seeds[0]]))
    for name in [*names, *JUDGES, "one seed's own grid (the yardstick)"]:
        cells = []
        for s in seeds:
            if (name.startswith("one seed") or JUDGES.get(name) == "own") and not own_grid(
                entry["grid"], s
            ):
                cells.append("no grid of this seed")  # not counted: nothing to read it off
                continue
            if name.startswith("one seed"):
                lr: float | None = own_grid_best(entry["grid"], s)
            elif name in JUDGES:
                lr = judged(entry, s, JUDGES[name])
            else:
                lr = picks(entry["probes"][s])[name]
            if lr is None:
                cells.append("none")
                found.append((name, math.inf, top))
                continue
            ratio, lost = lr / best, top - accuracy_at(lr, grid)
            found.append((name, ratio, lost))
            cells.append(f"{lr:.3g}, {ratio:.2f}, {100 * lost:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines, found


def summary(found: list[tuple[str, float, float]]) -> list[str]:
    lines = [
        "| rule | within 1.5x of the best grid LR | top-1 lost, mean | top-1 lost, worst |",
        "|---|---|---|---|",
    ]
    for name in dict.fromkeys(n for n, _, _ in found):
        mine = [(r, lost) for n, r, lost in found if n == name]
        within = sum(1 / 1.5 <= r <= 1.5 for r, _ in mine)
        losts = [lost for _, lost in mine]
        lines.append(
            f"| {name} | {within} of {len(mine)} | {100 * np.mean(losts):.2f} | {100 * max(losts):.2f} |"
        )
    return lines


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def loader(batch: int, device: torch.device) -> DataLoader[Any]:
    bundle = build_data(DataConfig(name="digits", image_size=16))
    return DataLoader(
        bundle.train,
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(0),
        pin_memory=device.type == "cuda",
    )


def run_tunekit(
    model: nn.Module, opt: torch.optim.Optimizer, data: DataLoader[Any], args: Any
) -> tuple[float, float | None, int]:
    data.generator.manual_seed(0)  # type: ignore[union-attr]
    sync(args.device)
    t = time.perf_counter()
    res = lr_range_test(
        model,
        opt,
        data,
        nn.CrossEntropyLoss(),
        start_lr=1e-7,
        end_lr=10.0,
        num_iter=args.iters,
        beta=0.95,
        rule="steepest",  # the rule torch-lr-finder uses
    )
    sync(args.device)
    return time.perf_counter() - t, res.suggestion, len(res.lrs)


def run_peer(
    model: nn.Module, opt: torch.optim.Optimizer, data: DataLoader[Any], args: Any
) -> tuple[float, float | None, int]:
    data.generator.manual_seed(0)  # type: ignore[union-attr]
    sync(args.device)
    t = time.perf_counter()
    finder = LRFinder(model, opt, nn.CrossEntropyLoss(), device=args.device)
    finder.range_test(
        data, start_lr=1e-7, end_lr=10.0, num_iter=args.iters, smooth_f=0.05, diverge_th=4
    )
    finder.reset()
    sync(args.device)
    elapsed = time.perf_counter() - t
    n = len(finder.history["lr"])
    suggestion = None
    if n >= 17:
        fig, ax = plt.subplots()
        _, suggestion = finder.plot(ax=ax, suggest_lr=True)
        plt.close(fig)
    return elapsed, suggestion, n


def timing(args: argparse.Namespace) -> None:
    """The range test's wall time against torch-lr-finder's, alternating round by round."""
    args.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    torch.manual_seed(0)
    model = SmallCNN(num_classes=10, in_channels=1, width=16).to(args.device)
    start = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    data = loader(args.batch, args.device)

    times: dict[str, list[float]] = {"tunekit": [], "torch-lr-finder": []}
    found: dict[str, list[Any]] = {"tunekit": [], "torch-lr-finder": []}
    runners = {"tunekit": run_tunekit, "torch-lr-finder": run_peer}
    run_tunekit(model, opt, data, args)  # warm-up (allocator, data path), not counted
    for r in range(args.rounds):
        order = list(runners) if r % 2 == 0 else list(reversed(runners))
        for name in order:
            model.load_state_dict(start)
            elapsed, suggestion, n = runners[name](model, opt, data, args)
            assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items()), (
                f"{name} did not restore"
            )
            times[name].append(elapsed)
            found[name].append((suggestion, n))
        print(
            f"round {r + 1}: " + ", ".join(f"{k} {times[k][-1]:.2f}s" for k in runners), flush=True
        )

    t_ours, t_peer = median(times["tunekit"]), median(times["torch-lr-finder"])
    ratio = t_ours / t_peer
    (s_ours, n_ours), (s_peer, n_peer) = found["tunekit"][-1], found["torch-lr-finder"][-1]
    fmt = lambda s: "none" if s is None else f"{s:.3g}"  # noqa: E731
    lines = [
        f"Machine: {machine()}.",
        "",
        f"Digits CNN (SmallCNN width 16, BN), digits 16x16 batch {args.batch}, SGD momentum 0.9 Nesterov, "
        f"sweep 1e-7..10 over {args.iters} iterations, smoothing 0.95, stop at 4x the best loss; "
        f"{args.rounds} alternating rounds, median.",
        "",
        "| | wall time per range test | iterations run | suggestion |",
        "|---|---|---|---|",
        f"| tunekit `lr_range_test` | {t_ours:.2f} s | {n_ours} | {fmt(s_ours)} |",
        f"| torch-lr-finder 0.2 (`range_test` + `reset`) | {t_peer:.2f} s | {n_peer} | {fmt(s_peer)} |",
        "",
        f"Ratio tunekit / torch-lr-finder: **{ratio:.3f}** (goal <= 1.0). tunekit's time includes the "
        "snapshot and bit-exact restore of model, optimizer, RNGs and the loader's generator.",
    ]
    if args.device.type == "cpu":
        lines += [
            "",
            "GPU figure: not taken yet (no GPU on this machine); the script runs on CUDA when there is one.",
        ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        title = "lr_finder: LR range test vs torch-lr-finder" + (
            " (GPU)" if args.device.type == "cuda" else ""
        )
        write_section(title, body)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    p.add_argument("--seeds", nargs="+", type=int, default=SEEDS, help="grid seeds")
    p.add_argument("--probe-seeds", nargs="+", type=int, default=PROBE_SEEDS, help="LR check seeds")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument(
        "--cache", type=Path, default=None, help="a JSON file of finished tasks to reuse and extend"
    )
    p.add_argument(
        "--reprobe",
        action="store_true",
        help="run the LR check again, keep the cached grid",
    )
    p.add_argument(
        "--replicates",
        type=int,
        default=0,
        metavar="N",
        help="rerun each check's refinement on N seed sets (the first is its own) and report "
        "how the count moves between them (about 25 min for N=5 on 2 cores)",
    )
    p.add_argument("--no-write", action="store_true", help="print only, do not update RESULTS.md")
    p.add_argument(
        "--timing",
        action="store_true",
        help="time the range test against torch-lr-finder instead (same sweep, same batches)",
    )
    p.add_argument("--rounds", type=int, default=7, help="--timing: alternating rounds")
    p.add_argument("--iters", type=int, default=100, help="--timing: range-test steps")
    p.add_argument("--batch", type=int, default=64, help="--timing: batch size")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.timing:
        timing(args)
        return
    cache: dict[str, Any] = {}
    if args.cache is not None and args.cache.exists():
        cache = json.loads(args.cache.read_text())

    def save() -> None:
        if args.cache is not None:
            args.cache.write_text(json.dumps(cache, indent=1))

    if args.replicates:
        replicates(args, cache, save)
        return
    started = time.perf_counter()
    body: list[str] = []
    found: list[tuple[str, float, float]] = []
    for task in args.tasks:
        entry = cache.setdefault(task, {"grid": {}, "probes": {}})
        for seed in args.probe_seeds:
            if str(seed) not in entry["probes"] or args.reprobe:
                print(f"{task}: LR check, seed {seed}", flush=True)
                entry["probes"][str(seed)] = probe(task, seed)
                save()
        print(f"{task}: grid", flush=True)
        train_grid(task, args.seeds, entry["grid"])
        save()
        shown = {
            "grid": {
                lr: {s: v[s] for s in map(str, args.seeds) if s in v}
                for lr, v in entry["grid"].items()
                if float(lr) in TASKS[task][3]
            },
            "probes": {str(s): entry["probes"][str(s)] for s in args.probe_seeds},
        }
        lines, mine = task_lines(task, shown)
        body += [*lines, ""]
        found += mine
    head = [
        f"Machine: {machine()}; torch threads {args.threads}. Grid seeds {args.seeds}, LR check "
        f"seeds {args.probe_seeds} (range test 100 steps 1e-7..10, smoothing 0.95; cross-check "
        "100 steps a run; refinement as long as the task's 2-epoch training). Wall time "
        f"{time.perf_counter() - started:.0f} s"
        + (f" (what {args.cache.name} held not counted)." if args.cache else "."),
        "",
        f"All {len(args.tasks)} tasks, every probe seed (ratios to the best grid LR; top-1 in points):",
        "",
        *summary(found),
        "",
        "Per task (each cell: the LR in the recipe's units, its ratio to the best grid LR, the "
        "top-1 lost at it in points):",
        "",
    ]
    text = "\n".join(head + body)
    print(text)
    if not args.no_write:
        write_seeds_section(
            "lr_finder: LR suggestion rules against the best LR of short trainings",
            "lr_finder.py",
            args.seeds,
            SEEDS,
            text,
        )


def replicates(args: argparse.Namespace, cache: dict[str, Any], save: Any) -> None:
    """``--replicates N``: the refinement of every cached check on N seed sets, and the table."""
    started = time.perf_counter()
    tasks = [t for t in args.tasks if t in cache and cache[t]["probes"]]
    for task in tasks:
        for seed in map(str, args.probe_seeds):
            res = cache[task]["probes"].get(seed)
            if res is None or not res["refine"]:
                continue
            sets = cache[task].setdefault("replicates", {}).setdefault(seed, {})
            for rep in range(args.replicates):
                if str(rep) not in sets:
                    sets[str(rep)] = replicate(task, seed, rep, [float(k) for k in res["refine"]])
                    print(f"{task} seed {seed} set {rep}: {sets[str(rep)]}", flush=True)
                    save()
    lines = [
        f"Machine: {machine()}; torch threads {args.threads}. Wall time "
        f"{time.perf_counter() - started:.0f} s (what the cache held not counted).",
        "",
        *replicate_lines(cache, tasks, args.probe_seeds, args.replicates),
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(
            "lr_finder: the refinement on other seed sets",
            f"`python benchmarks/lr_finder.py --cache FILE --replicates {args.replicates}` "
            "(after the run above, with its cache)\n\n" + text,
        )


if __name__ == "__main__":
    main()
