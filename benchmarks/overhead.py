"""Step time through tunekit's Trainer against a bare hand-written PyTorch loop.

Same model, weights, data, optimizer and schedule; the two loops alternate,
one epoch each, and the median step times are compared. Goal: ratio <= 1.01
(the bar of PyTorch Lightning's parity tests).

    python benchmarks/overhead.py                      # digits CNN on the CPU
    python benchmarks/overhead.py --model resnet50     # on a GPU: AMP (bf16) + channels-last
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

from tunekit.config import ModelConfig, ScheduleConfig
from tunekit.engine import CheckpointHook, MetricsWriter, Trainer, build_scheduler
from tunekit.models import build_model
from tunekit.tasks import ClassificationTask


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--steps", type=int, default=50, help="steps per epoch (one timing sample)")
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    in_ch = 1 if args.model == "small_cnn" else 3
    size = args.size if args.model == "small_cnn" else (224 if gpu else 64)
    amp = torch.bfloat16 if gpu else None
    channels_last = gpu
    torch.manual_seed(0)
    base = build_model(
        ModelConfig(name=args.model, width=16), num_classes=10, in_channels=in_ch
    ).to(device)
    if channels_last:
        base = base.to(memory_format=torch.channels_last)
    batches = [
        (
            torch.randn(args.batch, in_ch, size, size, device=device),
            torch.randint(0, 10, (args.batch,), device=device),
        )
        for _ in range(args.steps)
    ]
    if channels_last:
        batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]
    sched_cfg = ScheduleConfig(name="cosine", warmup_epochs=1)
    total_epochs = args.rounds + 2

    # -- bare loop
    bare_model = copy.deepcopy(base)
    bare_opt = torch.optim.SGD(bare_model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    bare_sched = build_scheduler(bare_opt, sched_cfg, args.steps, total_epochs)

    def bare_epoch() -> float:
        bare_model.train()
        sync(device)
        t0 = time.perf_counter()
        for x, y in batches:
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = F.cross_entropy(bare_model(x).float(), y)
            bare_opt.zero_grad(set_to_none=True)
            loss.backward()
            bare_opt.step()
            bare_sched.step()
        sync(device)
        return (time.perf_counter() - t0) / args.steps

    # -- tunekit's trainer, with the hooks every run has
    tk_model = copy.deepcopy(base)
    tk_opt = torch.optim.SGD(tk_model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    tmp = Path(tempfile.mkdtemp(prefix="tunekit-overhead-"))
    trainer = Trainer(
        tk_model,
        tk_opt,
        batches,  # type: ignore[arg-type]
        ClassificationTask(10, channels_last=channels_last),
        epochs=0,
        scheduler=build_scheduler(tk_opt, sched_cfg, args.steps, total_epochs),
        # The loop and its per-step hook calls; the once-an-epoch checkpoint is timed
        # apart below (with a few dozen steps an "epoch" here, it would dominate).
        hooks=[MetricsWriter(tmp / "metrics.jsonl")],
        dist=None,
        amp_dtype=amp,
    )
    trainer.device = device
    trainer.dist = type(trainer.dist)(device=device)

    def tunekit_epoch() -> float:
        trainer.epochs += 1
        sync(device)
        t0 = time.perf_counter()
        trainer.train()
        sync(device)
        return (time.perf_counter() - t0) / args.steps

    bare_epoch(), tunekit_epoch()  # warm-up (allocator, kernels)
    bare_t, tk_t = [], []
    for r in range(args.rounds):
        # Alternate which goes first, so drift in machine speed hits both alike.
        if r % 2:
            tk_t.append(tunekit_epoch())
            bare_t.append(bare_epoch())
        else:
            bare_t.append(bare_epoch())
            tk_t.append(tunekit_epoch())
    ck = CheckpointHook(tmp / "ck", "val/top1", "max")
    ck.bind(trainer)
    ck_t = []
    for _ in range(5):
        t0 = time.perf_counter()
        ck.after_epoch()
        ck_t.append(time.perf_counter() - t0)
    ck_ms = median(ck_t) * 1e3
    b, t = median(bare_t), median(tk_t)
    ratio = t / b
    imgs = args.batch / b, args.batch / t
    print(f"device: {machine()}")
    print(
        f"model {args.model}, batch {args.batch}, {size}x{size}, {args.rounds} rounds x {args.steps} steps"
    )
    print(f"bare loop: {b * 1e3:.2f} ms/step ({imgs[0]:.0f} img/s)")
    print(f"tunekit:   {t * 1e3:.2f} ms/step ({imgs[1]:.0f} img/s)")
    print(f"ratio tunekit/bare (median step time): {ratio:.3f}  (goal <= 1.01)")
    print(f"checkpoint at the end of an epoch (atomic write, fsync): {ck_ms:.1f} ms")
    if not args.no_write:
        kind = "GPU" if gpu else "CPU"
        write_section(
            f"Trainer overhead: {args.model} ({kind})",
            f"""
`python benchmarks/overhead.py --model {args.model}` — tunekit's Trainer (with its metrics hook)
against a bare PyTorch loop, same model, weights, data (synthetic tensors on the device), optimizer
and schedule; alternating epochs, median step time over {args.rounds} rounds of {args.steps} steps,
batch {args.batch}, {size}x{size} images{", bf16 autocast, channels-last" if gpu else ""}. The
checkpoint every run writes once an epoch (atomic: temp file, fsync, rename) is timed apart:
{ck_ms:.1f} ms, once per epoch.

| machine | bare loop | tunekit | ratio (goal <= 1.01) |
|---|---|---|---|
| {machine()} | {b * 1e3:.2f} ms/step ({imgs[0]:.0f} img/s) | {t * 1e3:.2f} ms/step ({imgs[1]:.0f} img/s) | **{ratio:.3f}** |
""",
        )


if __name__ == "__main__":
    main()
