"""EMA cost per training step: tunekit's multi-tensor ModelEma against torch's AveragedModel.

ResNet-18, SGD with momentum, one process. Four variants run in one process,
alternating in short blocks so that machine noise hits all of them alike:

- ``none``: the bare training step (forward, backward, optimizer step);
- ``tunekit``: the step plus ``ModelEma.update`` (one ``torch._foreach_lerp_``);
- ``averaged_model``: the step plus ``torch.optim.swa_utils.AveragedModel.update_parameters``
  with its default averaging function (on the CPU: one tensor at a time);
- ``averaged_model_multi``: AveragedModel with ``get_ema_multi_avg_fn`` (for reference).

Reported: median and best step time, and the averaging update's own time as a
share of the bare step (the update is timed by itself, inside the same steps).
On a shared machine the best (minimum) times are the steadier figures.

Usage::

    python benchmarks/ema_overhead.py            # CPU, or the GPU when CUDA exists
    python benchmarks/ema_overhead.py --write    # also update benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine, median, write_section

from tunekit.averaging import ModelEma

VARIANTS = ("none", "tunekit", "averaged_model", "averaged_model_multi")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_updater(variant: str, model: nn.Module) -> Callable[[int], None]:
    """The per-step averaging call of one variant."""
    if variant == "none":
        return lambda step: None
    if variant == "tunekit":
        ema = ModelEma(model, decay=0.999, buffers="copy")
        return lambda step: ema.update(model, step) and None
    if variant == "averaged_model":
        averaged = AveragedModel(model)  # default: equal averaging, per tensor on the CPU
        return lambda step: averaged.update_parameters(model)
    averaged_multi = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.999))
    return lambda step: averaged_multi.update_parameters(model)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--batch", type=int, default=None, help="batch size (default: 16 on CPU, 64 on GPU)"
    )
    parser.add_argument("--size", type=int, default=224, help="image side")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant per round")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = args.batch or (64 if device.type == "cuda" else 16)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=1000).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    updaters = {v: make_updater(v, model) for v in VARIANTS}
    step_times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    update_times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    step = 0

    def one_step(variant: str, record: bool) -> None:
        nonlocal step
        _sync(device)
        t0 = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        _sync(device)
        t1 = time.perf_counter()
        updaters[variant](step)
        _sync(device)
        t2 = time.perf_counter()
        if record:
            step_times[variant].append(t2 - t0)
            update_times[variant].append(t2 - t1)

    for v in VARIANTS:  # warm-up: allocator, kernels, the averaged copies' first (copying) update
        for _ in range(2):
            one_step(v, record=False)
    for r in range(args.rounds):
        order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
        for v in order:
            for _ in range(args.steps):
                one_step(v, record=True)

    base, base_min = median(step_times["none"]), min(step_times["none"])
    rows = []
    for v in VARIANTS:
        upd, upd_min = median(update_times[v]), min(update_times[v])
        rows.append(
            (
                v,
                median(step_times[v]),
                upd,
                100 * upd / base,
                min(step_times[v]),
                upd_min,
                100 * upd_min / base_min,
            )
        )
    n_tensors = sum(1 for _ in model.parameters()) + sum(1 for _ in model.buffers())
    header = (
        f"ResNet-18, batch {batch} x 3x{args.size}x{args.size}, SGD momentum, {device.type}; "
        f"{n_tensors} tensors, {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters; "
        f"{args.rounds} alternating rounds x {args.steps} steps per variant"
    )
    lines = [
        "| variant | median step (ms) | median update (ms) | update / bare step | best step (ms) | best update (ms) | best update / best bare step |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for v, st, upd, pct, st_min, upd_min, pct_min in rows:
        lines.append(
            f"| {v} | {1000 * st:.1f} | {1000 * upd:.2f} | {pct:.2f}% | {1000 * st_min:.1f} | {1000 * upd_min:.2f} | {pct_min:.2f}% |"
        )
    ratio = rows[2][2] / max(rows[1][2], 1e-12)
    verdict = "met" if max(rows[1][3], rows[1][6]) <= 2.0 else "NOT met"
    summary = (
        f"tunekit's multi-tensor EMA update costs {rows[1][3]:.2f}% of a bare step by medians, "
        f"{rows[1][6]:.2f}% by best times (goal <= 2%: {verdict}); AveragedModel with its default "
        f"averaging function costs {rows[2][3]:.2f}% / {rows[2][6]:.2f}% "
        f"({ratio:.1f}x tunekit's update by medians)."
    )
    print(header)
    print("\n".join(lines))
    print(summary)
    if args.write:
        gpu_note = (
            ""
            if device.type == "cuda"
            else "\n\nGPU figure: not taken yet (no GPU on this machine); the script runs it when CUDA exists."
        )
        write_section(
            f"EMA overhead per step ({device.type})",
            f"Machine: {machine()}.\n\n{header}.\n\n"
            + "\n".join(lines)
            + f"\n\n{summary}{gpu_note}\n\n"
            "Command: `python benchmarks/ema_overhead.py --write`.",
        )


if __name__ == "__main__":
    main()
