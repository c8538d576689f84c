"""Step time of a bare PyTorch loop with and without ``tunekit.watch`` (default settings).

The same model, weights, batches and optimizer; rounds of ``--steps`` steps alternate
between the bare loop and the watched one, and the median round times are compared.
Models: the digits CNN (small_cnn, 16 px) and torchvision ResNet-18 at 64 and 32 px.
Goal: ratio <= 1.02.

    python benchmarks/watch_overhead.py
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median, write_section

import tunekit
from tunekit.config import ModelConfig
from tunekit.models import build_model

CASES = [("small_cnn", 16, 1), ("resnet18", 64, 3), ("resnet18", 32, 3)]


def one_round(model, opt, batches, monitor) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if monitor is not None:
            monitor.step(loss)
    return time.perf_counter() - started


def measure(name: str, size: int, in_ch: int, args: argparse.Namespace) -> tuple[float, float]:
    torch.manual_seed(0)
    base = build_model(ModelConfig(name=name, width=16), num_classes=10, in_channels=in_ch)
    batches = [
        (torch.randn(args.batch, in_ch, size, size), torch.randint(0, 10, (args.batch,)))
        for _ in range(args.steps)
    ]
    bare, watched = copy.deepcopy(base), copy.deepcopy(base)
    opt_b = torch.optim.SGD(bare.parameters(), lr=0.01, momentum=0.9)
    opt_w = torch.optim.SGD(watched.parameters(), lr=0.01, momentum=0.9)
    with tempfile.TemporaryDirectory() as tmp:
        monitor = tunekit.watch(watched, opt_w, out=Path(tmp) / "run", progress=False)
        one_round(bare, opt_b, batches, None)  # warm-up of both
        one_round(watched, opt_w, batches, monitor)
        times_b, times_w = [], []
        for _ in range(args.rounds):
            times_b.append(one_round(bare, opt_b, batches, None))
            times_w.append(one_round(watched, opt_w, batches, monitor))
        monitor.close()
    return median(times_b) / args.steps, median(times_w) / args.steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=20, help="steps per round (one timing sample)")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    rows = []
    for name, size, in_ch in CASES:
        bare, watched = measure(name, size, in_ch, args)
        ratio = watched / bare
        print(
            f"{name} {size}px: bare {bare * 1e3:.1f} ms/step, watched {watched * 1e3:.1f} ms/step, ratio {ratio:.3f}"
        )
        rows.append(f"| {name} | {size} | {bare * 1e3:.1f} | {watched * 1e3:.1f} | {ratio:.3f} |")
    if args.no_write:
        return
    body = (
        f"`python benchmarks/watch_overhead.py --steps {args.steps} --rounds {args.rounds} "
        f"--batch {args.batch}`\n\nMachine: {machine()}\n\n"
        "A bare PyTorch loop against the same loop with `tunekit.watch` at its default settings "
        "(ratios every 20 steps, activations every 100, gradient guard every step, "
        "TensorBoard, metrics.jsonl), alternating rounds; median seconds per step. Goal: <= 1.02.\n\n"
        "| model | px | bare ms/step | watched ms/step | ratio |\n|---|---|---|---|---|\n"
        + "\n".join(rows)
    )
    write_section("tunekit.watch overhead on a bare loop (benchmarks/watch_overhead.py)", body)


if __name__ == "__main__":
    main()
