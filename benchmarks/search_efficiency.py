"""Search efficiency on digits: tunekit's coarse→fine search with pruning vs plain random search.

For each seed, both searches run the same number of trials over the same LR and
weight-decay ranges on the same recipe (digits, width-8 CNN). The baseline is
random search with no pruning, every trial trained at the full length with a
cosine schedule. The measure is the number of training epochs each search
spends (trials in the order they ran, epochs within a trial) until some trial
first reaches the random search's best validation top-1. The two searches
alternate which goes first from seed to seed.

Also measured: the tuner's own cost per trial on the default storage (a
journal file) — ask, sample, heartbeat, attributes, tell, with no training —
next to bare Optuna ask/tell on its in-memory storage.

    python benchmarks/search_efficiency.py                 # 5 seeds, writes RESULTS.md
    python benchmarks/search_efficiency.py --seeds 1 --no-write

Runs on CUDA when a GPU is visible (train.device=cuda), else on the CPU.
"""

from __future__ import annotations

import argparse
import logging
import math
import platform
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]

FULL_EPOCHS = 6
SPACE = {
    "optim.lr": {"type": "log_uniform", "low": 0.001, "high": 1.0},
    "optim.weight_decay": {"type": "log_uniform", "low": 1e-5, "high": 0.1},
}


def common_set(device: str) -> list[str]:
    return [
        "model.width=8",
        f"train.device={device}",
        "diagnostics.enabled=false",
    ]


def tunekit_study(seed: int, device: str) -> dict[str, Any]:
    return {
        "name": f"bench_tk_{seed}",
        "recipe": str(REPO / "recipes" / "digits.yaml"),
        "set": common_set(device),
        "seed": seed,
        "space": SPACE,
        "stages": [
            {
                "name": "coarse",
                "sampler": "qmc",
                "trials": 9,
                "epochs": FULL_EPOCHS,
                "pruner": {"name": "asha", "min_resource": 1, "reduction_factor": 3},
            },
            {
                "name": "fine",
                "sampler": "tpe",
                "trials": 4,
                "epochs": FULL_EPOCHS,
                "refine": {"top_k": 3},
                "pruner": {"name": "asha", "min_resource": 1, "reduction_factor": 3},
            },
        ],
    }


def random_study(seed: int, device: str, trials: int) -> dict[str, Any]:
    return {
        "name": f"bench_rs_{seed}",
        "recipe": str(REPO / "recipes" / "digits.yaml"),
        "set": common_set(device),
        "seed": seed,
        "space": SPACE,
        "stages": [{"name": "all", "sampler": "random", "trials": trials, "epochs": FULL_EPOCHS}],
    }


def run_study(data: dict[str, Any], workdir: Path) -> list[list[float]]:
    """Runs a study in this process; returns each trial's per-epoch val/top1, in the order run."""
    from tunekit.search import open_search, run_worker

    path = workdir / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    ctx = open_search(str(path), out=workdir / data["name"])
    run_worker(ctx)
    curves = []
    # One worker: stage by stage, trial numbers in the order they ran.
    for _, t in ctx.search.all_trials():
        curves.append([t.intermediate_values[k] for k in sorted(t.intermediate_values)])
    return curves


def epochs_to_reach(curves: list[list[float]], target: float) -> float:
    spent = 0
    for curve in curves:
        for v in curve:
            spent += 1
            if v >= target - 1e-12:
                return spent
    return math.inf


def tuner_cost_ms(n: int = 200) -> tuple[float, float]:
    """(tunekit per-trial overhead on the journal file, bare Optuna in-memory ask/tell), in ms."""
    from tunekit.search import Heartbeat, LivenessSpec, StagedSearch, load_study, open_storage
    from tunekit.search._objective import sample_params

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cost.yaml"
        data = random_study(0, "cpu", n)
        path.write_text(yaml.safe_dump(data))
        study, _ = load_study(str(path))
        spec = LivenessSpec()
        search = StagedSearch(study, open_storage(None, Path(tmp), spec))
        stage = search.stages[0]
        space = search.space(stage)
        s = search.optuna_study(stage)
        started = time.perf_counter()
        for i in range(n):
            trial = s.ask()
            with Heartbeat(s, trial._trial_id, spec):
                sample_params(trial, space)
                trial.set_user_attr("run_dir", f"trial-{i}")
                trial.report(0.5, 1)
                trial.should_prune()
            s.tell(trial, 0.5)
        tk = (time.perf_counter() - started) / n * 1000
    bare = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    started = time.perf_counter()
    for _ in range(n):
        trial = bare.ask()
        trial.suggest_float("optim.lr", 1e-3, 1.0, log=True)
        trial.suggest_float("optim.weight_decay", 1e-5, 0.1, log=True)
        trial.report(0.5, 1)
        bare.tell(trial, 0.5)
    return tk, (time.perf_counter() - started) / n * 1000


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next(
            line.split(":", 1)[1].strip()
            for line in out.splitlines()
            if line.startswith("Model name")
        )
    except Exception:
        name = platform.processor() or "unknown CPU"
    return f"{name}, {torch.get_num_threads()} torch threads"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument(
        "--no-write", action="store_true", help="print only; do not append to RESULTS.md"
    )
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("tunekit.diagnostics").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            work = Path(tmp) / f"seed{seed}"
            work.mkdir()
            tk_data = tunekit_study(seed, device)
            n_trials = sum(s["trials"] for s in tk_data["stages"])
            rs_data = random_study(seed, device, n_trials)
            t0 = time.perf_counter()
            # Alternate which search runs first, so neither always gets a cold or warm machine.
            if seed % 2 == 0:
                rs, tk = run_study(rs_data, work), run_study(tk_data, work)
            else:
                tk, rs = run_study(tk_data, work), run_study(rs_data, work)
            target = max(max(c) for c in rs if c)
            rs_epochs, tk_epochs = epochs_to_reach(rs, target), epochs_to_reach(tk, target)
            tk_best = max(max(c) for c in tk if c)
            rows.append(
                {
                    "seed": seed,
                    "trials": n_trials,
                    "target": target,
                    "rs_epochs": rs_epochs,
                    "rs_total": sum(len(c) for c in rs),
                    "tk_epochs": tk_epochs,
                    "tk_total": sum(len(c) for c in tk),
                    "tk_best": tk_best,
                    "wall_s": time.perf_counter() - t0,
                }
            )
            r = rows[-1]
            print(
                f"seed {seed}: random best {target:.4f} after {rs_epochs} epochs ({r['rs_total']} in all); "
                f"tunekit reaches it after {tk_epochs} epochs ({r['tk_total']} in all, best {tk_best:.4f}); "
                f"ratio {tk_epochs / rs_epochs:.3f}",
                flush=True,
            )
    ratios = [r["tk_epochs"] / r["rs_epochs"] for r in rows]
    finite = [x for x in ratios if math.isfinite(x)]
    tk_ms, bare_ms = tuner_cost_ms()
    lines = [
        "",
        "## search_efficiency (benchmarks/search_efficiency.py)",
        "",
        f"Machine: {machine()} ({device}). Date: {time.strftime('%Y-%m-%d')}.",
        f"Digits (1,437 training images, 360 validation), width-8 CNN; both searches {rows[0]['trials']} trials over log lr [1e-3, 1] and log wd [1e-5, 0.1].",
        f"Random search: no pruning, every trial {FULL_EPOCHS} epochs, cosine. tunekit: coarse 9 trials (QMC, ASHA",
        f"pruner: rungs at 1 and 3 epochs, reduction 3) -> fine 4 trials (TPE, ranges around the top 3, ASHA); all {FULL_EPOCHS} epochs, cosine.",
        "Measure: epochs spent until a trial first reaches random search's best val/top1.",
        "",
        "| seed | random best top-1 | random: epochs to it (of total) | tunekit: epochs to it (of total) | tunekit best | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r, ratio in zip(rows, ratios):
        lines.append(
            f"| {r['seed']} | {r['target']:.4f} | {r['rs_epochs']} ({r['rs_total']}) | {r['tk_epochs']} ({r['tk_total']}) "
            f"| {r['tk_best']:.4f} | {ratio:.3f} |"
        )
    reached = f"{len(finite)}/{len(ratios)} seeds reached the target"
    median = f"{statistics.median(finite):.3f}" if finite else "n/a"
    total_ratio = sum(r["tk_total"] for r in rows) / sum(r["rs_total"] for r in rows)
    lines += [
        "",
        f"Median ratio (tunekit / random epochs to the target): {median} ({reached}); "
        f"total epochs tunekit / random: {total_ratio:.3f}. Goal <= 0.2, limit <= 0.333.",
        f"Tuner cost per trial on the default storage (journal file; ask, sample, heartbeat, attrs, report, tell): "
        f"{tk_ms:.1f} ms; bare Optuna ask/tell in memory: {bare_ms:.1f} ms (ratio {tk_ms / bare_ms:.1f}x).",
    ]
    if device == "cpu":
        lines.append(
            "GPU figure: not taken yet (no GPU on this machine; the script uses CUDA when present)."
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        results = REPO / "benchmarks" / "RESULTS.md"
        with results.open("a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
