"""Tuner bookkeeping per trial: ``tunekit.search.run`` against bare Optuna on a journal file.

Both sides run the same trivial objective (two sampled floats, three reported
values, no training) for ``--sizes`` trials each, on a fresh journal file in a
temporary folder:

- tunekit: ``tunekit.search.run(study, objective=fn)``, the real search with its
  default journal storage, one in-process worker, one stage with a random
  sampler and no pruner; the time of the whole call (opening the storage,
  every trial, the summary it writes at the end) divided by the trials;
- bare Optuna: ``optuna.create_study(storage=JournalStorage(JournalFileBackend(path)))``
  and ``study.optimize`` with a random sampler and no pruner, the same way.

Rounds alternate between the two (tunekit, then Optuna), and the table gives
the median milliseconds per trial over the rounds, the difference, the ratio,
and the journal entries (lines of the journal file) per trial.
Goal: tunekit <= 5 ms per trial above bare Optuna.

    python benchmarks/search_bookkeeping.py                       # writes its RESULTS.md section
    python benchmarks/search_bookkeeping.py --save before.json --no-write
    python benchmarks/search_bookkeeping.py --before before.json  # adds the "before" columns
    python benchmarks/search_bookkeeping.py --profile 300         # cProfile of tunekit's side
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median, write_section

import tunekit.search

TITLE = "Tuner bookkeeping per trial against bare Optuna (benchmarks/search_bookkeeping.py)"
GOAL_MS = 5.0
REPORTS = 3


def objective(params: dict[str, Any], trial: Any) -> float:
    """tunekit's side: a closed-form score reported at three steps, no training."""
    value = -((params["x"] - 0.3) ** 2) - params["y"] ** 2
    for step in range(1, REPORTS + 1):
        trial.report(step, value - 1.0 / step)
    return value


def bare_objective(trial: optuna.Trial) -> float:
    """Bare Optuna's side: the same two floats and the same three reports."""
    x = trial.suggest_float("x", 0.0, 1.0)
    y = trial.suggest_float("y", -1.0, 1.0)
    value = -((x - 0.3) ** 2) - y**2
    for step in range(1, REPORTS + 1):
        trial.report(value - 1.0 / step, step)
    return value


def write_study(folder: Path, trials: int) -> Path:
    data = {
        "name": "bookkeeping",
        "metric": "score",
        "direction": "maximize",
        "space": {
            "x": {"type": "uniform", "low": 0.0, "high": 1.0},
            "y": {"type": "uniform", "low": -1.0, "high": 1.0},
        },
        "stages": [
            {
                "name": "coarse",
                "sampler": "random",
                "pruner": {"name": "none"},
                "trials": trials,
                "epochs": REPORTS,
            }
        ],
    }
    path = folder / "bookkeeping.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def run_tunekit(folder: Path, trials: int) -> tuple[float, int]:
    """Seconds for the whole search, and the journal's entries."""
    study = write_study(folder, trials)
    out = folder / "tunekit"
    started = time.perf_counter()
    summary = tunekit.search.run(study, objective=objective, out=out)
    seconds = time.perf_counter() - started
    assert summary["complete"] and summary["counts"]["complete"] == trials, summary["counts"]
    return seconds, lines(out / "study.journal")


def run_optuna(folder: Path, trials: int) -> tuple[float, int]:
    """Seconds for create_study and optimize, and the journal's entries."""
    path = folder / "optuna.journal"
    started = time.perf_counter()
    study = optuna.create_study(
        storage=JournalStorage(JournalFileBackend(str(path))),
        study_name="bookkeeping",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.NopPruner(),
    )
    study.optimize(bare_objective, n_trials=trials)
    seconds = time.perf_counter() - started
    assert len(study.trials) == trials
    return seconds, lines(path)


def measure(trials: int, rounds: int) -> dict[str, float]:
    tk_ms, op_ms, tk_lines, op_lines = [], [], [], []
    for _ in range(rounds):
        for fn, ms, entries in ((run_tunekit, tk_ms, tk_lines), (run_optuna, op_ms, op_lines)):
            with tempfile.TemporaryDirectory() as tmp:
                seconds, n = fn(Path(tmp), trials)
            ms.append(seconds * 1e3 / trials)
            entries.append(n / trials)
    tk, op = median(tk_ms), median(op_ms)
    return {
        "trials": trials,
        "tunekit_ms": tk,
        "optuna_ms": op,
        "diff_ms": tk - op,
        "ratio": tk / op,
        "tunekit_entries": median(tk_lines),
        "optuna_entries": median(op_lines),
    }


def profile(trials: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        prof = cProfile.Profile()
        prof.enable()
        run_tunekit(Path(tmp), trials)
        prof.disable()
    stats = pstats.Stats(prof)
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(25)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 300])
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per size")
    p.add_argument("--save", type=Path, help="write the figures to this JSON file")
    p.add_argument("--before", type=Path, help="a --save file: its figures as 'before' columns")
    p.add_argument("--profile", type=int, metavar="TRIALS", help="profile one tunekit search")
    p.add_argument("--note", default="", help="a sentence for the section (load, what changed)")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.profile:
        profile(args.profile)
        return
    rows = [measure(n, args.rounds) for n in args.sizes]
    before = {r["trials"]: r for r in json.loads(args.before.read_text())} if args.before else {}
    lines_out = []
    for r in rows:
        b = before.get(r["trials"])
        was = f" (before: +{b['diff_ms']:.1f} ms, {b['tunekit_entries']:.1f} entries)" if b else ""
        print(
            f"{r['trials']} trials: tunekit {r['tunekit_ms']:.1f} ms/trial, optuna "
            f"{r['optuna_ms']:.1f} ms/trial, +{r['diff_ms']:.1f} ms, ratio {r['ratio']:.2f}; "
            f"journal entries/trial {r['tunekit_entries']:.1f} vs {r['optuna_entries']:.1f}{was}"
        )
        cells = [
            str(r["trials"]),
            f"{r['optuna_ms']:.1f}",
            f"{r['tunekit_ms']:.1f}",
            f"{r['diff_ms']:+.1f}",
            f"{r['ratio']:.2f}",
            f"{r['optuna_entries']:.1f}",
            f"{r['tunekit_entries']:.1f}",
        ]
        if before:
            cells[2:2] = [
                f"{b['tunekit_ms']:.1f}" if b else "",
                f"{b['diff_ms']:+.1f}" if b else "",
            ]
            cells.append(f"{b['tunekit_entries']:.1f}" if b else "")
        lines_out.append("| " + " | ".join(cells) + " |")
    if args.save:
        args.save.write_text(json.dumps(rows, indent=2))
    if args.no_write:
        return
    head = ["trials", "Optuna ms/trial"]
    head += ["tunekit before", "diff before"] if before else []
    head += [
        "tunekit ms/trial",
        "diff ms",
        "ratio",
        "Optuna entries/trial",
        "tunekit entries/trial",
    ]
    head += ["tunekit entries before"] if before else []
    cmd = "python benchmarks/search_bookkeeping.py --sizes " + " ".join(map(str, args.sizes))
    body = (
        f"`{cmd} --rounds {args.rounds}`\n\nMachine: {machine()}\n\n"
        "The whole `tunekit.search.run` (one in-process worker, default journal storage, one "
        "stage, random sampler, no pruner) against bare Optuna's `create_study` + `optimize` "
        "on a journal file (random sampler, no pruner), the same trivial objective (two floats, "
        f"{REPORTS} reports, no training); alternating rounds, median ms per trial, and journal "
        f"entries (lines) per trial. Goal: diff <= {GOAL_MS:g} ms. {args.note}\n\n"
        "| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n" + "\n".join(lines_out)
    )
    write_section(TITLE, body)


if __name__ == "__main__":
    main()
