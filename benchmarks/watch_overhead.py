"""Step time of a bare PyTorch loop with and without ``tunekit.watch`` (default settings).

The same model, weights, batches and optimizer; rounds of ``--steps`` steps alternate
between the bare loop and the watched one (in turn first, so neither always follows the
other), and the ratio is the median over rounds of the watched round's time to the bare
round's next to it (a pair shares the machine's state of the moment, so drift cancels).
Models: the digits CNN (small_cnn, 16 px) and torchvision ResNet-18 at 64 and 32 px.
``--models`` runs some of them only. Goal: ratio <= 1.02.

When wandb is installed, the same is done, in rounds of its own, for the loop under
``wandb.watch(model, log="all")`` in offline mode (with ``wandb.log`` of the loss each
step, which is what commits its histograms); without wandb that peer is skipped and said.

    python benchmarks/watch_overhead.py
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median, write_section

import tunekit
from tunekit.config import ModelConfig
from tunekit.diagnostics import Guards, UpdateRatioMonitor
from tunekit.models import build_model

CASES = [("small_cnn", 16, 1), ("resnet18", 64, 3), ("resnet18", 32, 3)]

# After each step: the loss goes to the watcher (nothing for the bare loop).
OnStep = Callable[[torch.Tensor], None] | None


def one_round(model: Any, opt: Any, batches: Any, on_step: OnStep) -> float:
    started = time.perf_counter()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(loss)
    return time.perf_counter() - started


def _wandb_arm(model: torch.nn.Module, tmp: str) -> tuple[OnStep, Callable[[], None]]:
    import wandb

    run = wandb.init(mode="offline", dir=tmp, project="watch-overhead", reinit="create_new")
    run.watch(model, log="all")

    def on_step(loss: torch.Tensor) -> None:
        run.log({"loss": loss.item()})

    return on_step, run.finish


def measure(
    name: str, size: int, in_ch: int, args: argparse.Namespace, peer: str
) -> dict[str, float]:
    """Median seconds per step of the bare loop and of the loop under ``peer`` ("tunekit"
    or "wandb"). One peer at a time: wandb's threads and service process would slow the
    bare loop too if it ran alongside."""
    torch.manual_seed(0)
    base = build_model(ModelConfig(name=name, width=16), num_classes=10, in_channels=in_ch)
    batches = [
        (torch.randn(args.batch, in_ch, size, size), torch.randint(0, 10, (args.batch,)))
        for _ in range(args.steps)
    ]
    arms: dict[str, tuple[Any, Any, OnStep]] = {}
    closers: list[Callable[[], None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for arm in ("bare", peer):
            model = copy.deepcopy(base)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            on_step: OnStep = None
            if arm == "tunekit":
                monitor = tunekit.watch(model, opt, out=Path(tmp) / "run", progress=False)
                on_step = monitor.step
                closers.append(monitor.close)
                ratios = next(h for h in monitor.hooks if isinstance(h, UpdateRatioMonitor))
                guards = next(h for h in monitor.hooks if isinstance(h, Guards))
            elif arm == "wandb":
                on_step, finish = _wandb_arm(model, tmp)
                closers.append(finish)
            arms[arm] = (model, opt, on_step)
        # Warm-up: two rounds, so an automatic cadence has been chosen before the timing.
        for _ in range(2):
            for model, opt, on_step in arms.values():
                one_round(model, opt, batches, on_step)
        times: dict[str, list[float]] = {arm: [] for arm in arms}
        order = list(arms)
        for r in range(args.rounds):
            for arm in order if r % 2 == 0 else order[::-1]:
                model, opt, on_step = arms[arm]
                times[arm].append(one_round(model, opt, batches, on_step))
        for close in closers:
            close()
    result = {arm: median(ts) / args.steps for arm, ts in times.items()}
    result["ratio"] = median([w / b for w, b in zip(times[peer], times["bare"])])
    if peer == "tunekit":
        # The automatic cadences it chose, and why.
        result["interval"] = ratios.interval
        result["check_interval"] = guards.gradient_check_interval
        for e in monitor.metrics.events:
            if e["event"] == "diagnostics_cadence":
                key = "ratio" if e["check"] == "update ratios" else "check"
                result[f"{key}_ms"], result["step_ms"] = e["measurement_ms"], e["step_ms"]
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=20, help="steps per round (one timing sample)")
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--no-wandb", action="store_true", help="leave out the wandb peer")
    p.add_argument(
        "--models",
        nargs="+",
        choices=sorted({c[0] for c in CASES}),
        default=None,
        help="only these models (default: all cases)",
    )
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    with_wandb = not args.no_wandb and importlib.util.find_spec("wandb") is not None
    if not with_wandb:
        print(
            "wandb peer skipped: " + ("--no-wandb" if args.no_wandb else "wandb is not installed")
        )
    load_before = os.getloadavg()[0]
    rows = []
    for name, size, in_ch in CASES:
        if args.models is not None and name not in args.models:
            continue
        t = measure(name, size, in_ch, args, "tunekit")
        if with_wandb:
            w = measure(name, size, in_ch, args, "wandb")
            t["wandb"], t["wandb_bare"], t["wandb_ratio"] = w["wandb"], w["bare"], w["ratio"]
        ratio = t["ratio"]
        line = (
            f"{name} {size}px: bare {t['bare'] * 1e3:.1f} ms/step, "
            f"tunekit.watch {t['tunekit'] * 1e3:.1f} ms/step (ratio {ratio:.3f}; update ratios "
            f"every {t['interval']:.0f} steps, {t.get('ratio_ms', math.nan):.2g} ms each; "
            f"gradient checks every {t['check_interval']:.0f}, {t.get('check_ms', math.nan):.2g} ms "
            f"each; a step {t.get('step_ms', math.nan):.3g} ms)"
        )
        row = (
            f"| {name} | {size} | {t['interval']:.0f} | {t['check_interval']:.0f} | "
            f"{t['bare'] * 1e3:.1f} | {t['tunekit'] * 1e3:.1f} | {ratio:.3f} |"
        )
        if "wandb" in t:
            line += f", wandb.watch {t['wandb'] * 1e3:.1f} ms/step (ratio {t['wandb_ratio']:.3f} to its own bare rounds, {t['wandb_bare'] * 1e3:.1f} ms/step)"
            row += (
                f" {t['wandb_bare'] * 1e3:.1f} | {t['wandb'] * 1e3:.1f} | {t['wandb_ratio']:.3f} |"
            )
        print(line, flush=True)
        rows.append(row)
    load = f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    print(load)
    if args.no_write:
        return
    head = (
        "| model | px | update ratios every | gradient checks every | bare ms/step "
        "| tunekit.watch ms/step | ratio |"
    )
    rule = "|---|---|---|---|---|---|---|"
    if with_wandb:
        head += " bare ms/step (wandb rounds) | wandb.watch ms/step | ratio |"
        rule += "---|---|---|"
    body = (
        f"`python benchmarks/watch_overhead.py --steps {args.steps} --rounds {args.rounds} "
        f"--batch {args.batch}`\n\nMachine: {machine()}; {load}.\n\n"
        "A bare PyTorch loop against the same loop with `tunekit.watch` at its default settings "
        "(update ratios and gradient checks at their automatic intervals, the loss and the "
        "model output checked every step, activations every 100 steps, TensorBoard, metrics.jsonl)"
        + (
            ', and, in rounds of their own, the bare loop against `wandb.watch(model, log="all")` '
            "offline with `wandb.log` of the loss each step"
            if with_wandb
            else ""
        )
        + ", alternating rounds; median seconds per step, and the median over rounds of each "
        "watched round's time to the bare round next to it. Goal: <= 1.02.\n\n"
        + "\n".join([head, rule, *rows])
    )
    write_section("tunekit.watch overhead on a bare loop (benchmarks/watch_overhead.py)", body)


if __name__ == "__main__":
    main()
