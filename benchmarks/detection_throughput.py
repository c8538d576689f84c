"""Detection training throughput (images/s): tunekit's trainer against torchvision's reference loop.

Both sides train the same detector (same builder, same initial weights), on
the same data (the same CocoDetection, loader, collate and batch), with the
same optimizer. tunekit runs its Trainer with the hooks every run has
(metrics, checkpoints at the epoch's end are outside the timed window) and
its task's loss dict; the reference is the loop of torchvision's
``references/detection/engine.py`` (``train_one_epoch``): move images and
targets, ``loss_dict = model(images, targets)``, sum, backward, step. The two
alternate, round after round, each timed over the same steps after a warm-up,
and the ratio of their medians is reported (>1: tunekit is faster).

    python benchmarks/detection_throughput.py              # CPU: tiny FCOS on 64px shapes
    python benchmarks/detection_throughput.py --gpu-r50    # CUDA: RetinaNet R50-FPN, COCO-like 800px images

The GPU variant runs only where CUDA exists; it generates 800px shapes images
(the loader and model see COCO-sized inputs) in a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine, write_section

from tunekit.config import Recipe, load_recipe
from tunekit.engine import HookBase
from tunekit.run import build_trainer

REPO = Path(__file__).resolve().parents[1]


class _StepClock(HookBase):
    """Times steps ``warmup+1 .. warmup+steps`` (data loading included: after_step to after_step)."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.start = self.end = 0.0

    def after_step(self) -> None:
        t = self.trainer
        if t.step == self.warmup:
            self.start = time.perf_counter()
        elif t.step == self.warmup + self.steps:
            self.end = time.perf_counter()
            t.request_stop("benchmark done")


def _recipe(args: argparse.Namespace, root: Path) -> Recipe:
    overrides = [
        f"data.root={root}",
        f"train.batch_size={args.batch}",
        "train.epochs=1",
        f"train.max_steps_per_epoch={args.warmup + args.steps}",
        "diagnostics.enabled=false",
        "data.val_subset=8",  # the end-of-epoch evaluation is outside the timed steps; keep it short
    ]
    if args.gpu_r50:
        overrides += [
            "model.name=retinanet_resnet50_fpn",
            "data.image_size=800",
            "data.augment.min_size=[800]",
            "data.augment.max_size=1333",
            f"data.kwargs={{train: {args.batch * (args.warmup + args.steps)}, val: 8, size: 800, seed: 0}}",
            "data.num_workers=4",
            "optim.name=sgd",
            "optim.lr=0.01",
            "train.amp=bf16",
        ]
    return load_recipe(REPO / "recipes" / "shapes_fcos.yaml", overrides)


def tunekit_round(recipe: Recipe, out: Path, args: argparse.Namespace) -> float:
    clock = _StepClock(args.warmup, args.steps)
    trainer, _ = build_trainer(recipe, out, hooks=[clock], progress=False)
    trainer.train()
    return args.steps * args.batch / (clock.end - clock.start)


def reference_round(recipe: Recipe, out: Path, args: argparse.Namespace) -> float:
    """torchvision's references/detection/engine.py train_one_epoch, on the same parts."""
    _, comp = build_trainer(recipe, out, progress=False)  # the same model, data and loader
    model, device = comp.model, comp.dist.device
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.optim.name == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            params,
            lr=recipe.optim.lr,
            momentum=recipe.optim.momentum,
            weight_decay=recipe.optim.weight_decay,
        )
    else:
        opt = torch.optim.AdamW(params, lr=recipe.optim.lr, weight_decay=recipe.optim.weight_decay)
    autocast: Any = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else torch.autocast("cpu", enabled=False)
    )
    model.train()
    start = 0.0
    for i, (images, targets) in enumerate(comp.train_loader):
        images = [img.as_subclass(torch.Tensor).to(device) for img in images]
        targets = [
            {
                "boxes": t["boxes"].as_subclass(torch.Tensor).to(device),
                "labels": t["labels"].to(device),
            }
            for t in targets
        ]
        with autocast:
            loss_dict = model(images, targets)
        losses = sum(loss_dict.values())
        opt.zero_grad()
        losses.backward()  # type: ignore[union-attr]
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i + 1 == args.warmup:
            start = time.perf_counter()
        elif i + 1 == args.warmup + args.steps:
            return args.steps * args.batch / (time.perf_counter() - start)
    raise RuntimeError("the loader ran out before the timed steps ended")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--gpu-r50", action="store_true", help="RetinaNet R50-FPN at 800px on CUDA")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = p.parse_args()
    if args.gpu_r50 and not torch.cuda.is_available():
        sys.exit("--gpu-r50 needs a CUDA device")
    if args.gpu_r50 and args.batch == 32:
        args.batch = 8
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "shapes"
        recipe = _recipe(args, root)
        ours, ref = [], []
        for r in range(args.rounds):
            # Alternate which side goes first, so drift in the machine's speed cancels.
            pair = [("tunekit", tunekit_round), ("reference", reference_round)]
            for name, fn in pair if r % 2 == 0 else reversed(pair):
                ips = fn(recipe, Path(tmp) / f"{name}{r}", args)
                (ours if name == "tunekit" else ref).append(ips)
                print(f"round {r + 1} {name:9s} {ips:8.1f} images/s", flush=True)
    m_ours, m_ref = statistics.median(ours), statistics.median(ref)
    ratio = m_ours / m_ref
    what = (
        "RetinaNet R50-FPN (GN), 800px shapes images, bf16"
        if args.gpu_r50
        else f"FCOS tiny-FPN (GN, width 16), 64px shapes images, {args.threads} threads"
    )
    print(f"tunekit {m_ours:.1f} images/s, reference loop {m_ref:.1f} images/s, ratio {ratio:.3f}")
    if args.no_write:
        return
    title = "Detection training throughput" + (" (GPU, R50-FPN)" if args.gpu_r50 else " (CPU)")
    body = f"""
`python benchmarks/detection_throughput.py{" --gpu-r50" if args.gpu_r50 else ""}` — {what}; batch {args.batch},
{args.steps} timed steps after {args.warmup} warm-up steps, {args.rounds} alternating rounds, medians.

Machine: {machine()}

| loop | images/s (median) | rounds |
|---|---|---|
| tunekit Trainer + DetectionTask | {m_ours:.1f} | {", ".join(f"{x:.1f}" for x in ours)} |
| torchvision reference loop | {m_ref:.1f} | {", ".join(f"{x:.1f}" for x in ref)} |

Ratio tunekit / reference: **{ratio:.3f}** (1.0 = same speed).
"""
    write_section(title, body)


if __name__ == "__main__":
    main()
