"""Synthetic learning curves and run directories with known shapes."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunekit.report import Curves

N = 600  # steps
EPOCHS = 10


def cosine(t: float, peak: float = 0.1) -> float:
    return peak * 0.5 * (1 + math.cos(math.pi * t / N))


def curves(
    loss: Callable[[float], float],
    *,
    lr: Callable[[float], float] = cosine,
    val_gap: Callable[[int], float] = lambda e: 0.0,
    val_metric: Callable[[int], float] = lambda e: 0.97 - 0.5 * math.exp(-e / 1.2),
    noise: float = 0.1,
    seed: int = 0,
) -> Curves:
    """Step losses ``loss(t)`` with multiplicative noise, and epoch means; val loss = train + gap."""
    rng = random.Random(seed)
    c = Curves(metric="val/top1", mode="max")
    for t in range(1, N + 1):
        c.steps.append(float(t))
        c.loss.append(loss(t) * math.exp(noise * rng.gauss(0, 1)))
        c.lr.append(lr(t))
    per = N // EPOCHS
    for e in range(1, EPOCHS + 1):
        mean = sum(c.loss[(e - 1) * per : e * per]) / per
        c.epochs.append(float(e))
        c.train_loss.append(mean)
        c.val_loss.append(mean + val_gap(e))
        c.val_metric.append(val_metric(e))
    return c


def healthy_loss(t: float) -> float:
    return 2.2 * math.exp(-t / 60) + 0.08


def write_run(run_dir: Path, c: Curves | None = None, *, events: bool = True) -> Path:
    """A run directory whose metrics.jsonl holds ``c`` (healthy by default) and diagnostics records."""
    c = c or curves(healthy_loss)
    run_dir.mkdir(parents=True, exist_ok=True)
    layers = ["stem.0", "layer1.conv1", "fc"]
    lines: list[dict[str, Any]] = []
    per = N // EPOCHS
    for i, (s, v, lr) in enumerate(zip(c.steps, c.loss, c.lr)):
        rec: dict[str, Any] = {
            "kind": "step",
            "step": int(s),
            "epoch": s / per,
            "lr": lr,
            "train/step_loss": v,
        }
        rec["grad_norm/total"] = 1.0 / (1 + i / 100)
        if int(s) % 20 == 0:
            for k, layer in enumerate(layers):
                rec[f"update_ratio/{layer}"] = 10.0 ** (-2 - k) * (1 + 0.1 * math.sin(i))
                rec[f"grad_norm/{layer}"] = 0.5 / (k + 1)
                rec[f"weight_norm/{layer}"] = 3.0 + k
        if int(s) % 100 == 0:
            rec["act/stem.2/mean"] = 0.4
            rec["act/stem.2/std"] = 0.6
            rec["act/stem.2/dead"] = 0.05 * (s / N)
        lines.append(rec)
        if int(s) % per == 0:
            e = int(s) // per - 1
            lines.append(
                {
                    "kind": "epoch",
                    "epoch": c.epochs[e],
                    "step": float(s),
                    "train/loss": c.train_loss[e],
                    "lr": lr,
                    "time/epoch_s": 1.0,
                    "val/loss": c.val_loss[e],
                    "val/top1": c.val_metric[e],
                }
            )
    if events:
        lines.append(
            {
                "kind": "event",
                "step": 153,
                "epoch": 2.55,
                "event": "loss_spike",
                "level": "info",
                "message": "loss spike: 0.9 at step 153 is 4.0x the median 0.22 of the last 50 steps <b>",
            }
        )
        lines.append(
            {
                "kind": "event",
                "step": 300,
                "epoch": 5.0,
                "event": "ratio_warning",
                "level": "warning",
                "message": "layer 'fc': update/weight ratio 1e-05 outside [0.0001, 0.01]",
            }
        )
    text = "\n".join(json.dumps(r) for r in lines) + "\n"
    (run_dir / "metrics.jsonl").write_text(text)
    (run_dir / "recipe.yaml").write_text(
        "name: synthetic\ntrain:\n  metric: val/top1\n  mode: max\n"
    )
    return run_dir
