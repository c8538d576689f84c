"""A staged search over your own training loop: least squares by SGD with momentum, in numpy.

The loop is yours; tunekit draws ``lr``, ``momentum`` and ``weight_decay``, runs the
coarse stage (pruning the trials that fall behind), refines the ranges around the best and
trains longer (about a second on a CPU)::

    python examples/objective_search.py runs/search/objective_demo
    tunekit search --study examples/objective_study.yaml --workers 2   # the same, on workers
    tunekit report --study examples/objective_study.yaml --out runs/search/objective_demo
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

import tunekit.search

STUDY = Path(__file__).with_name("objective_study.yaml")


def objective(params: dict[str, Any], trial: tunekit.search.ObjectiveTrial) -> float:
    """Trains for ``trial.epochs`` epochs and returns the validation loss."""
    rng = np.random.default_rng(trial.seed)
    x = rng.normal(size=(256, 8))
    y = x @ rng.normal(size=8) + 0.1 * rng.normal(size=256)
    (x_train, x_val), (y_train, y_val) = np.split(x, [192]), np.split(y, [192])
    w, velocity = np.zeros(8), np.zeros(8)
    val_loss = float("nan")
    with (trial.run_dir / "metrics.jsonl").open("w") as log, np.errstate(all="ignore"):
        for epoch in range(1, trial.epochs + 1):
            for batch in np.array_split(rng.permutation(192), 6):
                xb, yb = x_train[batch], y_train[batch]
                grad = xb.T @ (xb @ w - yb) / len(batch) + params["weight_decay"] * w
                velocity = params["momentum"] * velocity - params["lr"] * grad
                w = w + velocity
            val_loss = float(np.mean((x_val @ w - y_val) ** 2))
            # tunekit's metrics.jsonl format: `tunekit report --study` draws this curve.
            record = {"kind": "epoch", "step": 6 * epoch, "epoch": epoch, "val/loss": val_loss}
            log.write(json.dumps(record) + "\n")
            log.flush()
            trial.report(epoch, val_loss)  # a diverged or lagging trial stops here
    return val_loss


def main(out: str = "runs/search/objective_demo") -> dict[str, Any]:
    return tunekit.search.run(STUDY, objective=objective, out=out)


if __name__ == "__main__":
    summary = main(*sys.argv[1:2])
    print(summary["best"])
