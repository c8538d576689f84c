"""Tasks for tabular replay: small image classifiers trained over a grid, every curve kept.

A replay benchmark (as NAS-Bench-201 and LCBench do) trains a grid of
configurations once, with the validation metric after every epoch and several
seeds, and then replays tuners against the stored table at no training cost.
This module holds the tasks, the bare training loop that makes a curve, and the
table builder and loader.

Tasks
-----
``digits`` (the easy case: it saturates)
    scikit-learn's bundled 8x8 digits (1,797 real images, 10 classes), split
    80/20 stratified with seed 0: 1,437 training and 360 validation images,
    batch 32 (44 steps an epoch). The best configuration scores 0.984 (mean of
    3 seeds), where the standard error of a score is 0.66 points; 13 of the 40
    configurations are within 0.5 points of it, so many are tied within noise.
``shapes`` (the harder case)
    crops of the objects of tunekit's generated shapes images (3 classes:
    square, circle, triangle), cut through ``tunekit.detection:shapes_crops``.
    The images are 32 px, so a shape is 6-14 px across before its crop is
    resized to 16 px: small squares and circles look alike, and shapes drawn
    first are partly covered by later ones. The training set is small (800
    images, 2,046 crops, batch 64, 31 steps an epoch) and 20% of its labels are
    flipped to another class (the validation labels are clean), so the
    learning rate and, at high rates, weight decay matter. The validation set
    is the first 12,000 crops of 5,200 images. The best configuration scores
    0.898, where the standard error of a score is 0.28 points; 3 of the 40
    configurations are within 0.5 points of it, the median is 0.821. Seeds
    differ more than the validation noise (a median of 1.8 points between the
    seeds of one configuration), which replay's fresh-seed quality averages out.

Both use the same small plain CNN (conv-BN-ReLU stem, two stride-2 conv-BN-ReLU
stages, average pool, linear: tunekit's ``small_cnn`` without the residual
blocks and at a quarter of the width), written here as an ``nn.Sequential``
because a table needs hundreds of full runs on one CPU thread and the residual
``SmallCNN`` at width 32 does about 60 times the multiply-adds per 16 px image.

Training (:func:`curve`): SGD with momentum 0.9 (no Nesterov), the
configuration's ``lr`` and ``weight_decay``, a cosine schedule over the full
length with no warmup and per-step updates, fixed batch size (last partial batch
dropped, so every epoch has the same steps), validation top-1 after every epoch.
A non-finite loss ends training: the rest of the curve is chance accuracy.

Rebuild the tables (one torch thread; the committed ones took 7 and 22 minutes of
training on a shared 2-core machine, where a digits run alone takes about 2 s and
a shapes run about 5 s)::

    python benchmarks/_tasks.py --task digits --out benchmarks/tables/digits.json
    python benchmarks/_tasks.py --task shapes --out benchmarks/tables/shapes.json

An interrupted build resumes from ``<out>.partial.json``. Generated data are
cached under ``~/.cache/tunekit/bench/`` (or ``$TUNEKIT_CACHE/bench``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _replay import Table
from torch import nn

METRIC = "val/top1"
DIGITS_SEED = 0  # the split of digits and the data of shapes never change with the run seed


@dataclass(frozen=True)
class Data:
    """A task's tensors, normalised, in memory."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    classes: int


@dataclass(frozen=True)
class TaskSpec:
    """What a task trains on and how; the grid every table of it covers."""

    name: str
    load: Callable[[], Data]
    width: int
    batch_size: int
    lrs: tuple[float, ...]
    weight_decays: tuple[float, ...]
    epochs: int = 9
    seeds: tuple[int, ...] = (0, 1, 2)


def _log_grid(low: float, high: float, n: int) -> tuple[float, ...]:
    # Rounded to 4 significant digits so a grid value reads back from JSON exactly.
    return tuple(float(f"{v:.4g}") for v in np.logspace(math.log10(low), math.log10(high), n))


def _cache_dir() -> Path:
    from tunekit.shapes import default_cache_dir

    return default_cache_dir() / "bench"


def _normalise(x_train: torch.Tensor, x_val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Statistics of the training set only, per channel, so validation stays unseen.
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return (x_train - mean) / std, (x_val - mean) / std


def load_digits() -> Data:
    """scikit-learn's digits, split 80/20 stratified with seed 0 (1,437 / 360)."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    idx = np.arange(len(y))
    tr, va = train_test_split(idx, test_size=0.2, stratify=bunch.target, random_state=DIGITS_SEED)
    x_train, x_val = _normalise(x[tr], x[va])
    return Data(x_train, y[tr], x_val, y[va], classes=10)


#: The shapes task's data: generated images, crops, sizes, training label noise.
SHAPES_IMAGE = 32
SHAPES_CROP = 16
SHAPES_TRAIN_IMAGES = 800  # about 2,000 crops
SHAPES_VAL_IMAGES = 5200  # enough images for SHAPES_VAL crops (about 2.5 per image)
SHAPES_VAL = 12_000
SHAPES_LABEL_NOISE = 0.2
SHAPES_SEED = 0


def load_shapes() -> Data:
    """Crops of tunekit's shapes objects, cut once and cached as a tensor file."""
    cache = _cache_dir() / (
        f"shapes-crops-{SHAPES_IMAGE}-{SHAPES_CROP}-{SHAPES_TRAIN_IMAGES}-{SHAPES_VAL_IMAGES}"
        f"-{SHAPES_SEED}.pt"
    )
    if cache.is_file():
        saved = torch.load(cache)
        x_tr, y_tr, x_va, y_va = saved["x_train"], saved["y_train"], saved["x_val"], saved["y_val"]
    else:
        from tunekit.detection import shapes_crops

        bundle = shapes_crops(
            root=str(cache.with_suffix("")),
            crop_size=SHAPES_CROP,
            hflip=False,
            train=SHAPES_TRAIN_IMAGES,
            val=SHAPES_VAL_IMAGES,
            size=SHAPES_IMAGE,
            seed=SHAPES_SEED,
        )
        # The crops are uint8 tensors held by the datasets; reading them directly skips the
        # per-item ImageNet normalisation, which the task replaces by its own.
        x_tr, y_tr = bundle.train.images, bundle.train.labels  # type: ignore[attr-defined]
        x_va, y_va = bundle.val.images, bundle.val.labels  # type: ignore[attr-defined]
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        torch.save({"x_train": x_tr, "y_train": y_tr, "x_val": x_va, "y_val": y_va}, tmp)
        os.replace(tmp, cache)
    if len(y_va) < SHAPES_VAL:
        raise RuntimeError(
            f"shapes made {len(y_va)} validation crops from {SHAPES_VAL_IMAGES} images, "
            f"fewer than the {SHAPES_VAL} the task needs; raise SHAPES_VAL_IMAGES"
        )
    x_va, y_va = x_va[:SHAPES_VAL], y_va[:SHAPES_VAL]
    classes = 3
    # Label noise is part of the data (its own fixed seed), not of a run: every run and seed
    # sees the same flipped labels. A flipped label is always another class.
    g = torch.Generator().manual_seed(SHAPES_SEED + 1)
    flip = torch.rand(len(y_tr), generator=g) < SHAPES_LABEL_NOISE
    shift = torch.randint(1, classes, (len(y_tr),), generator=g)
    y_tr = torch.where(flip, (y_tr + shift) % classes, y_tr)
    x_train, x_val = _normalise(x_tr.float() / 255.0, x_va.float() / 255.0)
    return Data(x_train, y_tr.long(), x_val, y_va.long(), classes=classes)


DIGITS = TaskSpec(
    "digits",
    load_digits,
    width=8,
    batch_size=32,
    lrs=_log_grid(1e-3, 1.0, 10),
    weight_decays=(1e-5, 1e-4, 1e-3, 1e-2),
)
SHAPES = TaskSpec(
    "shapes",
    load_shapes,
    width=8,
    batch_size=64,
    lrs=_log_grid(1e-3, 1.0, 10),
    weight_decays=(1e-5, 1e-4, 1e-3, 1e-2),
)

#: The tasks by name.
TASKS: dict[str, TaskSpec] = {t.name: t for t in (DIGITS, SHAPES)}

_DATA: dict[str, Data] = {}


def task_data(task: str) -> Data:
    """The task's data, loaded (or generated) once per process."""
    if task not in _DATA:
        _DATA[task] = _spec(task).load()
    return _DATA[task]


def _spec(task: str) -> TaskSpec:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[task]


def build_model(in_channels: int, classes: int, width: int) -> nn.Module:
    """conv-BN-ReLU at w, 2w (/2), 4w (/2), average pool, linear."""

    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(in_channels, width, 1),
        *block(width, 2 * width, 2),
        *block(2 * width, 4 * width, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, classes),
    )


def cosine_lr(base: float, step: int, total: int) -> float:
    """The learning rate at ``step`` of ``total``: cosine from ``base`` to 0, no warmup."""
    return 0.5 * base * (1.0 + math.cos(math.pi * step / total))


@torch.no_grad()
def _top1(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 2000) -> float:
    model.eval()
    correct = sum(
        int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
        for i in range(0, len(y), batch)
    )
    return correct / len(y)


def steps_per_epoch(task: str) -> int:
    return len(task_data(task).y_train) // _spec(task).batch_size


def curve(task: str, config: dict[str, float], seed: int, epochs: int) -> list[float]:
    """Validation top-1 (a fraction) after each of ``epochs`` epochs of one run.

    The schedule spans all ``epochs``, so a shorter run is not the prefix of a
    longer one; replay reads a truncated trial as the prefix of the full run.

    Example:
        >>> curve("digits", {"lr": 0.1, "weight_decay": 1e-4}, seed=0, epochs=2)  # doctest: +SKIP
        [0.86111, 0.95278]
    """
    return list(train_epochs(task, config, seed, epochs))


def live_source(table: Table, key: tuple[float, ...], seed: int) -> Iterator[float]:
    """The replay's source for live training (``search_efficiency.py`` without ``--replay``):
    the table's grid point trained for real, epoch by epoch, at the table's full length."""
    return train_epochs(table.task, dict(zip(table.names, key)), seed, table.epochs)


def train_epochs(task: str, config: dict[str, float], seed: int, epochs: int) -> Iterator[float]:
    """:func:`curve`, one epoch at a time: a tuner that stops reading stops the training."""
    spec, data = _spec(task), task_data(task)
    torch.manual_seed(seed)
    model = build_model(data.x_train.shape[1], data.classes, spec.width)
    opt = torch.optim.SGD(
        model.parameters(),
        lr=config["lr"],
        momentum=0.9,
        nesterov=False,
        weight_decay=config["weight_decay"],
    )
    loss_fn = nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(seed)
    n, bs = len(data.y_train), spec.batch_size
    per_epoch = n // bs
    total = per_epoch * epochs
    chance = 1.0 / data.classes
    out: list[float] = []
    step = 0
    for _epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=order)
        for b in range(per_epoch):
            idx = perm[b * bs : (b + 1) * bs]
            for group in opt.param_groups:
                group["lr"] = cosine_lr(config["lr"], step, total)
            loss = loss_fn(model(data.x_train[idx]), data.y_train[idx])
            if not torch.isfinite(loss):
                # A diverged run scores chance for the rest of its length, as a tuner sees it.
                yield from [chance] * (epochs - len(out))
                return
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        acc = _top1(model, data.x_val, data.y_val)
        # Finite loss but NaN weights (an overflow in the last step) still reads as chance.
        out.append(acc if math.isfinite(acc) else chance)
        yield out[-1]


def _grid(spec: TaskSpec) -> list[dict[str, float]]:
    return [{"lr": lr, "weight_decay": wd} for lr in spec.lrs for wd in spec.weight_decays]


def _key(config: dict[str, float], seed: int) -> tuple[float, float, int]:
    return (float(config["lr"]), float(config["weight_decay"]), int(seed))


def _machine() -> str:
    # Run as a script, benchmarks/ is on sys.path (as for the other benchmark scripts);
    # imported as benchmarks._tasks (replay, tests), the package is.
    name = "benchmarks._common" if __package__ else "_common"
    return str(importlib.import_module(name).machine())


def _write(path: Path, table: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(table, indent=None, separators=(",", ":")) + "\n")
    os.replace(tmp, path)


def build_table(
    task: str,
    out_path: str | os.PathLike[str],
    *,
    seeds: tuple[int, ...] | None = None,
    epochs: int | None = None,
    command: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Trains every (configuration, seed) of the task's grid and writes the table as JSON.

    Progress goes to ``<out>.partial.json`` after every run; a build started
    again with the same settings continues from it.
    """
    spec = _spec(task)
    seeds = tuple(seeds) if seeds else spec.seeds
    epochs = epochs or spec.epochs
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.stem + ".partial.json")
    data = task_data(task)
    table: dict[str, Any] = {
        "task": task,
        "metric": METRIC,
        "direction": "maximize",
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch(task),
        "batch_size": spec.batch_size,
        "train_size": len(data.y_train),
        "val_size": len(data.y_val),
        "classes": data.classes,
        "chance": round(1.0 / data.classes, 5),
        "space": {"lr": sorted(spec.lrs), "weight_decay": sorted(spec.weight_decays)},
        "seeds": list(seeds),
        "runs": [],
        "machine": _machine(),
        "torch_threads": torch.get_num_threads(),
        "built": "",
        "command": command or f"python benchmarks/_tasks.py --task {task} --out {out}",
    }
    done: dict[tuple[float, float, int], dict[str, Any]] = {}
    if partial.is_file():
        old = json.loads(partial.read_text())
        same = ("task", "epochs", "space", "val_size", "steps_per_epoch")
        if all(old.get(k) == table[k] for k in same):
            done = {_key(r["config"], r["seed"]): r for r in old["runs"]}
            log(f"resuming from {partial}: {len(done)} runs done")
    todo = [(c, s) for s in seeds for c in _grid(spec)]
    start = time.perf_counter()
    for i, (config, seed) in enumerate(todo, 1):
        key = _key(config, seed)
        if key not in done:
            t0 = time.perf_counter()
            values = curve(task, config, seed, epochs)
            done[key] = {
                "config": dict(config),
                "seed": seed,
                "curve": [round(v, 5) for v in values],
                "wall_s": round(time.perf_counter() - t0, 2),
            }
            table["runs"] = list(done.values())
            _write(partial, table)
            r = done[key]
            log(
                f"[{i}/{len(todo)}] {task} lr={config['lr']:g} wd={config['weight_decay']:g} "
                f"seed={seed}: final {r['curve'][-1]:.4f} in {r['wall_s']:.1f}s "
                f"({time.perf_counter() - start:.0f}s elapsed)"
            )
    table["runs"] = [done[_key(c, s)] for c, s in todo]
    table["built"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    table["build_s"] = round(
        sum(r["wall_s"] for r in table["runs"]), 1
    )  # training time; resumes excluded
    _write(out, table)
    Table.load(out)  # what was written must read back
    partial.unlink(missing_ok=True)
    return table


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("--out", required=True, help="the table's JSON file")
    p.add_argument("--seeds", type=int, nargs="+", help="run seeds (default: the task's)")
    p.add_argument("--epochs", type=int, help="full length of a run (default: the task's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args(argv)
    # One thread: the tables are built on shared machines, and wall_s is read per thread.
    torch.set_num_threads(args.threads)
    command = "python benchmarks/_tasks.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    t0 = time.perf_counter()
    table = build_table(args.task, args.out, seeds=args.seeds, epochs=args.epochs, command=command)
    print(
        f"wrote {args.out}: {len(table['runs'])} runs in {time.perf_counter() - t0:.0f}s, "
        f"{Path(args.out).stat().st_size / 1024:.0f} KiB"
    )


if __name__ == "__main__":
    main()
