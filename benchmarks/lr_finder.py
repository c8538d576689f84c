"""Where each LR-suggestion rule lands against the best LR of a grid of short trainings.

For each task (a recipe plus overrides, every one CPU-sized):

1. a grid: 2 epochs of the recipe (no warmup, no augmentation, cosine decay) at
   LRs 2x apart, over ``--seeds``; the score of an LR is the mean over the seeds
   of the final validation top-1, and the best LR of the grid is the target;
2. one range test and cross-check, exactly as ``tunekit lr-find`` runs them
   (``run_sanity`` with the LR check alone, seed 0), with every rule's
   suggestion added to the cross-check's short runs;
3. each rule's suggestion read off that one curve: ``steepest`` (torch-lr-finder),
   ``valley`` (fastai), ``min10`` (fastai's minimum), and the cross-check's pick
   among the fixed LRs 1e-1..1e-4 plus one rule's suggestion (what tunekit
   recommended before, with ``steepest``) or among the rules' suggestions alone.
   Every short run starts from the same restored state on the same batches, so
   the pick among a subset of them is the pick a cross-check of that subset makes.

Reported per task and rule: the suggestion, its ratio to the best grid LR (goal:
within 1.5x), and the accuracy at the suggestion, interpolated in log LR from the
grid (clamped, and marked, outside it).

    python benchmarks/lr_finder.py                         # all tasks, seeds 0 1 (9 to 18 min a task on 2 busy cores)
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
from tunekit.models import SmallCNN
from tunekit.run import build_trainer
from tunekit.sanity import RULES, SanityOptions, lr_range_test, run_sanity

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [0, 1]
DECADES = [1e-1, 1e-2, 1e-3, 1e-4]  # the cross-check's fixed LRs
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

#: name -> (recipe file, overrides, model section replacing the recipe's or None, LR grid, what)
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
        {
            "builder": "tunekit.detection:tiny_resnet",
            "kwargs": {"width": 8, "norm": "gn", "in_channels": 1},
        },
        SGD_GRID,
        "digits 16x16, TinyResNet width 8 (GroupNorm), SGD momentum 0.9 Nesterov, wd 5e-4, batch 64",
    ),
    # Added after the Adam-family halving was chosen on digits_adamw: a held-out check of it.
    "digits_tiny_resnet_adamw": (
        "recipes/digits.yaml",
        ADAMW,
        {
            "builder": "tunekit.detection:tiny_resnet",
            "kwargs": {"width": 8, "norm": "gn", "in_channels": 1},
        },
        ADAM_GRID,
        "digits 16x16, TinyResNet width 8 (GroupNorm), AdamW wd 0.01, batch 64",
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


def train_grid(task: str, seeds: list[int]) -> dict[float, list[float]]:
    scores: dict[float, list[float]] = {}
    for lr in TASKS[task][3]:
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                trainer, _ = build_trainer(
                    recipe(task, [f"optim.lr={lr}", f"seed={seed}"]), Path(tmp), progress=False
                )
                trainer.train()
            acc = float(trainer.history[-1]["val/top1"])
            scores.setdefault(lr, []).append(acc)
            print(f"  {task} lr {lr:.3g} seed {seed}: top1 {acc:.3f}", flush=True)
    return scores


def probe(task: str) -> dict[str, Any]:
    """One range test and cross-check as `tunekit lr-find` runs them, every rule's pick added."""
    r = recipe(task, ["seed=0"])
    started = time.perf_counter()
    report = run_sanity(r, options=SanityOptions(checks=("lr",), cross_check_rules=tuple(RULES)))
    assert report.lr is not None
    rt, cc = report.lr.range_test, report.lr.cross_check
    runs = {run.lr: (-math.inf if run.diverged else run.fall) for run in cc.runs}
    return {
        "suggestions": {k: report.recipe_lr(v) if v else None for k, v in rt.suggestions.items()},
        "runs": {str(report.recipe_lr(lr)): fall for lr, fall in runs.items()},
        "chosen": report.recipe_lr(report.lr.chosen) if report.lr.chosen else None,
        "default_rule": rt.rule,
        "chosen_by": report.lr.chosen_by,
        "start": report.recipe_lr(report.lr.start) if report.lr.start else None,
        "wall_s": time.perf_counter() - started,
    }


def pick(runs: dict[float, float], among: list[float | None]) -> float | None:
    """The cross-check's winner among ``among``: the largest fall, which must be positive."""
    falls = {lr: f for lr, f in runs.items() if any(c and math.isclose(lr, c) for c in among)}
    best = max(falls, key=lambda lr: falls[lr], default=None)
    return best if best is not None and falls[best] > 0 else None


def rows(task: str, res: dict[str, Any]) -> list[tuple[str, float | None]]:
    s: dict[str, float | None] = res["suggestions"]
    runs = {float(k): v for k, v in res["runs"].items()}
    decades: list[float | None] = list(DECADES)
    out: list[tuple[str, float | None]] = [(f"rule `{k}`", v) for k, v in s.items()]
    out += [
        (
            "cross-check: 1e-1..1e-4 + `steepest` (tunekit before)",
            pick(runs, [*decades, s["steepest"]]),
        ),
        ("cross-check: 1e-1..1e-4 + `valley`", pick(runs, [*decades, s["valley"]])),
        ("cross-check: 1e-1..1e-4 + every rule", pick(runs, [*decades, *s.values()])),
        ("cross-check: the rules' suggestions alone", pick(runs, list(s.values()))),
    ]
    if res.get("start") and not math.isclose(res["start"], s["steepest"] or 0.0):
        out.append(("`steepest` halved (tunekit's start for Adam-family optimizers)", res["start"]))
    out += [
        (f"**tunekit now** (`lr-find`'s chosen LR, rule `{res['default_rule']}`)", res["chosen"]),
    ]
    return out


def accuracy_at(lr: float, grid: dict[float, float]) -> str:
    lrs = sorted(grid)
    x = np.log2(lrs)
    acc = float(np.interp(math.log2(lr), x, [grid[k] for k in lrs]))
    edge = " (edge)" if not lrs[0] / 1.01 <= lr <= lrs[-1] * 1.01 else ""
    return f"{acc:.1%}{edge}"


def table(task: str, scores: dict[float, list[float]], res: dict[str, Any]) -> list[str]:
    grid = {lr: float(np.mean(v)) for lr, v in scores.items()}
    best = max(grid, key=lambda lr: grid[lr])
    at_edge = " (at the grid's edge)" if best in (min(grid), max(grid)) else ""
    lines = [
        f"### {task}: {TASKS[task][4]}",
        "",
        "Grid (mean top-1 over the seeds): "
        + ", ".join(f"{lr:.3g}: {grid[lr]:.1%}" for lr in sorted(grid))
        + f". Best LR **{best:.3g}** ({grid[best]:.1%}){at_edge}. Range test and cross-check: "
        f"{res['wall_s']:.0f} s.",
        "",
        "| rule | suggested LR | / best grid LR | within 1.5x | top-1 at the suggestion |",
        "|---|---|---|---|---|",
    ]
    for name, lr in rows(task, res):
        if lr is None:
            lines.append(f"| {name} | none | | no | |")
            continue
        ratio = lr / best
        ok = "yes" if 1 / 1.5 <= ratio <= 1.5 else "no"
        lines.append(f"| {name} | {lr:.3g} | {ratio:.2f} | {ok} | {accuracy_at(lr, grid)} |")
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
    p.add_argument("--seeds", nargs="+", type=int, default=SEEDS)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument(
        "--cache", type=Path, default=None, help="a JSON file of finished tasks to reuse and extend"
    )
    p.add_argument(
        "--reprobe",
        action="store_true",
        help="run the range test and cross-check again, keep the cached grid",
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
    started = time.perf_counter()
    body: list[str] = []
    for task in args.tasks:
        if task in cache and args.reprobe:
            print(f"{task}: range test and cross-check (grid from the cache)", flush=True)
            cache[task]["probe"] = probe(task)
            if args.cache is not None:
                args.cache.write_text(json.dumps(cache, indent=1))
        if task not in cache or cache[task]["seeds"] != args.seeds:
            print(f"{task}: range test and cross-check", flush=True)
            res = probe(task)
            print(f"{task}: grid", flush=True)
            scores = train_grid(task, args.seeds)
            cache[task] = {
                "seeds": args.seeds,
                "probe": res,
                "grid": {str(k): v for k, v in scores.items()},
            }
            if args.cache is not None:
                args.cache.write_text(json.dumps(cache, indent=1))
        entry = cache[task]
        scores = {float(k): v for k, v in entry["grid"].items()}
        body += [*table(task, scores, entry["probe"]), ""]
    head = [
        f"Machine: {machine()}; torch threads {args.threads}. Seeds {args.seeds} for the grid, "
        "seed 0 for the range test and cross-check (100 steps each, batch 64, 1e-7..10, smoothing 0.95). "
        f"Wall time {time.perf_counter() - started:.0f} s"
        + (f" (tasks read from {args.cache.name} not counted)." if args.cache else "."),
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


if __name__ == "__main__":
    main()
