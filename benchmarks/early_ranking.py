"""Does a trial's early metric rank it as it will end? The model's own top-1 vs its EMA's.

Pruners (median, ASHA, Hyperband) stop trials by their metric at early epochs.
That works when the early ranking agrees with the final one. Under a decaying
schedule, a high LR keeps the model noisy until the LR comes down, so the
configurations that end best can look worst early (short-horizon bias). An
exponential moving average of the weights smooths that noise as the decay
would, so its metric may rank trials early as they end.

For each seed, the digits recipe (width-8 CNN) is trained at 27 random
(LR, weight decay) draws — the same draws as random search in
``search_efficiency.py`` — for 9 epochs with a cosine schedule and an EMA
(decay 0.98, BN statistics recalibrated on 10 batches) evaluated beside the
model every epoch. Reported: the Spearman correlation between each epoch's
top-1 (the model's, the EMA's) and the trial's final best top-1 of the model,
over all trials and over those that end within 2 points of the best.

    python benchmarks/early_ranking.py                  # seeds 0 and 1, writes RESULTS.md
    python benchmarks/early_ranking.py --seeds 1 --no-write
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path

import optuna
import torch
from _common import machine, write_section
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parents[1]
TRIALS = 27
EPOCHS = 9
EMA = ["averaging.ema.decay=0.98", "averaging.ema.recalibrate_batches=10"]


def curves(seed: int, device: str) -> list[dict[str, list[float]]]:
    from tunekit.config import load_recipe
    from tunekit.run import train

    # The sampler search_efficiency.py's random search uses for this seed (stage 0).
    sampler = optuna.samplers.RandomSampler(seed=seed * 1000)
    study = optuna.create_study(sampler=sampler)
    out = []
    for _ in range(TRIALS):
        trial = study.ask()
        lr = trial.suggest_float("optim.lr", 1e-3, 1.0, log=True)
        wd = trial.suggest_float("optim.weight_decay", 1e-5, 0.1, log=True)
        study.tell(trial, 0.0)
        recipe = load_recipe(
            REPO / "recipes" / "digits.yaml",
            [
                "model.width=8",
                f"train.device={device}",
                "diagnostics.enabled=false",
                f"optim.lr={lr}",
                f"optim.weight_decay={wd}",
                f"train.epochs={EPOCHS}",
                *EMA,
            ],
        )
        with tempfile.TemporaryDirectory() as run:
            train(recipe, out=run, progress=False)
            lines = Path(run, "metrics.jsonl").read_text().splitlines()
        records = [r for r in map(json.loads, lines) if "val/top1" in r]
        out.append(
            {
                "model": [r["val/top1"] for r in records],
                "ema": [r["ema/val/top1"] for r in records],
            }
        )
    return out


def correlations(runs: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    final = [max(r["model"]) for r in runs]
    close = [i for i, f in enumerate(final) if f >= max(final) - 0.02]
    out: dict[str, list[float]] = {}
    for kind in ("model", "ema"):
        for group, idx in (("all", list(range(len(runs)))), ("close", close)):
            out[f"{kind}/{group}"] = [
                float(spearmanr([runs[i][kind][e] for i in idx], [final[i] for i in idx]).statistic)
                for e in range(EPOCHS - 1)
            ]
    out["n_close"] = [float(len(close))]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print only; do not update RESULTS.md")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("tunekit.diagnostics").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lines = [
        f"Machine: {machine()} ({device}). Date: {time.strftime('%Y-%m-%d')}.",
        f"Digits, width-8 CNN, {TRIALS} random (LR, weight decay) draws per seed (random search's in "
        f"search_efficiency.py), {EPOCHS} epochs, cosine; EMA decay 0.98 evaluated every epoch.",
        "Spearman correlation between the top-1 after epoch e and the trial's final best top-1 "
        "(the model's). 'close': the trials that end within 2 points of the best.",
        "",
        "| seed | ranked by | trials | "
        + " | ".join(f"epoch {e}" for e in range(1, EPOCHS))
        + " |",
        "|---|---|---|" + "---|" * (EPOCHS - 1),
    ]
    for seed in range(args.seeds):
        c = correlations(curves(seed, device))
        for kind in ("model", "ema"):
            for group in ("all", "close"):
                n = TRIALS if group == "all" else int(c["n_close"][0])
                vals = " | ".join(f"{v:+.2f}" for v in c[f"{kind}/{group}"])
                lines.append(f"| {seed} | {kind} | {group} ({n}) | {vals} |")
        print("\n".join(lines[-4:]), flush=True)
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("early_ranking (benchmarks/early_ranking.py)", text)


if __name__ == "__main__":
    main()
