"""tunekit's LR range test against the torch-lr-finder package, in one run.

Same model and starting weights, same data (the same batches in the same
order), same optimizer, same sweep (1e-7 to 10, exponential, 100 iterations),
same smoothing (0.95) and the same divergence stop (4x the best smoothed
loss). The two alternate, round after round, each restoring the model
afterwards (tunekit does it itself; torch-lr-finder through ``reset()``,
which is included in its time). Reported: median wall time per range test,
the ratio tunekit / torch-lr-finder (goal <= 1.0), and both suggestions
(tunekit: steepest fall of the smoothed loss against log LR after the first
10 points; torch-lr-finder: its ``plot(suggest_lr=True)``, the steepest
gradient of its smoothed loss with 10 points skipped at the start and 5 at
the end).

    python benchmarks/lr_finder.py              # digits CNN on the CPU (on a GPU when there is one)
    python benchmarks/lr_finder.py --rounds 3 --no-write
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # torch-lr-finder draws a progress bar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch_lr_finder import LRFinder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median, write_section

from tunekit.config import DataConfig
from tunekit.data import build_data
from tunekit.models import SmallCNN
from tunekit.sanity import lr_range_test


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


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds (each runs both once)")
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--no-write", action="store_true", help="print only, do not update RESULTS.md")
    args = p.parse_args()
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


if __name__ == "__main__":
    main()
