"""Tuner bookkeeping per trial: ``tunekit.search.run`` against bare Optuna on a journal file.

Both sides run the same trivial objective (two sampled floats, three reported
values, no training) for ``--sizes`` trials each, on a fresh journal file in a
temporary folder:

- tunekit: ``tunekit.search.run(study, objective=fn)``, the real search with its
  default journal storage, one in-process worker, one stage with a random
  sampler and no pruner (and ``rounds.max_trials`` at the plan's size, so that
  each trial checks the study's budget); the time of the whole call (opening the storage,
  every trial, the summary it writes at the end) divided by the trials;
- bare Optuna: ``optuna.create_study(storage=JournalStorage(JournalFileBackend(path)))``
  and ``study.optimize`` with a random sampler and no pruner, the same way.

Rounds alternate between the two (tunekit, then Optuna), and the table gives
the median milliseconds per trial over the rounds (after an untimed warm-up
of each side), the difference, the ratio,
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
        # The plan's own size: it changes nothing but makes every trial check the budget,
        # which counts the trials of every cell.
        "rounds": {"max_trials": trials},
    }
    path = folder / "bookkeeping.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Appends:
    """Counts the journal's locked, flushed writes (``append_logs`` calls) while it is entered."""

    def __init__(self) -> None:
        self.count = 0
        self._original = JournalFileBackend.append_logs

    def __enter__(self) -> Appends:
        original, counter = self._original, self

        def counted(backend: JournalFileBackend, logs: list[dict[str, Any]]) -> None:
            counter.count += 1
            original(backend, logs)

        JournalFileBackend.append_logs = counted  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        JournalFileBackend.append_logs = self._original  # type: ignore[method-assign]


def lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def run_tunekit(folder: Path, trials: int) -> tuple[float, int, int]:
    """Seconds for the whole search, the journal's entries and its writes."""
    study = write_study(folder, trials)
    out = folder / "tunekit"
    with Appends() as appends:
        started = time.perf_counter()
        summary = tunekit.search.run(study, objective=objective, out=out)
        seconds = time.perf_counter() - started
    assert summary["complete"] and summary["counts"]["complete"] == trials, summary["counts"]
    return seconds, lines(out / "study.journal"), appends.count


def run_optuna(folder: Path, trials: int) -> tuple[float, int, int]:
    """Seconds for create_study and optimize, the journal's entries and its writes."""
    path = folder / "optuna.journal"
    with Appends() as appends:
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
    return seconds, lines(path), appends.count


def measure(trials: int, rounds: int) -> dict[str, float]:
    tk_ms: list[float] = []
    op_ms: list[float] = []
    tk_lines: list[float] = []
    op_lines: list[float] = []
    tk_writes: list[float] = []
    op_writes: list[float] = []
    sides = ((run_tunekit, tk_ms, tk_lines, tk_writes), (run_optuna, op_ms, op_lines, op_writes))
    for _ in range(rounds):
        for fn, ms, entries, writes in sides:
            with tempfile.TemporaryDirectory() as tmp:
                seconds, n, w = fn(Path(tmp), trials)
            ms.append(seconds * 1e3 / trials)
            entries.append(n / trials)
            writes.append(w / trials)
    tk, op = median(tk_ms), median(op_ms)
    return {
        "trials": trials,
        "tunekit_ms": tk,
        "optuna_ms": op,
        "diff_ms": tk - op,
        "ratio": tk / op,
        "tunekit_entries": median(tk_lines),
        "optuna_entries": median(op_lines),
        "tunekit_writes": median(tk_writes),
        "optuna_writes": median(op_writes),
    }


def profile(trials: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_tunekit(Path(tmp), 5)  # imports, untimed
    with tempfile.TemporaryDirectory() as tmp:
        prof = cProfile.Profile()
        prof.enable()
        run_tunekit(Path(tmp), trials)
        prof.disable()
    stats = pstats.Stats(prof)
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(25)


def _row(side: str, r: dict[str, float]) -> str:
    cells = [
        str(int(r["trials"])),
        side,
        f"{r['optuna_ms']:.1f}",
        f"{r['tunekit_ms']:.1f}",
        f"{r['diff_ms']:+.1f}",
        f"{r['ratio']:.2f}",
        f"{r['optuna_entries']:.1f} / {r['tunekit_entries']:.1f}",
        f"{r['optuna_writes']:.1f} / {r['tunekit_writes']:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


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
    for fn in (run_tunekit, run_optuna):  # imports and first-call costs, untimed
        with tempfile.TemporaryDirectory() as tmp:
            fn(Path(tmp), 5)
    rows = [measure(n, args.rounds) for n in args.sizes]
    before = {r["trials"]: r for r in json.loads(args.before.read_text())} if args.before else {}
    table = []
    for r in rows:
        print(
            f"{r['trials']} trials: tunekit {r['tunekit_ms']:.1f} ms/trial, optuna "
            f"{r['optuna_ms']:.1f} ms/trial, {r['diff_ms']:+.1f} ms, ratio {r['ratio']:.2f}; "
            f"journal entries/trial {r['tunekit_entries']:.1f} vs {r['optuna_entries']:.1f}, "
            f"writes/trial {r['tunekit_writes']:.1f} vs {r['optuna_writes']:.1f}"
        )
        table += [_row("tunekit before", before[r["trials"]])] if r["trials"] in before else []
        table.append(_row("tunekit now" if before else "tunekit", r))
    if args.save:
        args.save.write_text(json.dumps(rows, indent=2))
    if args.no_write:
        return
    cmd = "python benchmarks/search_bookkeeping.py --sizes " + " ".join(map(str, args.sizes))
    head = (
        "| trials | side | Optuna ms/trial | tunekit ms/trial | diff ms | ratio "
        "| entries/trial (Optuna / tunekit) | writes/trial (Optuna / tunekit) |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    body = (
        f"`{cmd} --rounds {args.rounds}`\n\nMachine: {machine()}\n\n"
        "The whole `tunekit.search.run` (one in-process worker, default journal storage, one "
        "stage, random sampler, no pruner, `rounds.max_trials` at the plan's size) against "
        "bare Optuna's `create_study` + `optimize` on a journal file (random sampler, no "
        f"pruner), the same trivial objective (two floats, {REPORTS} reports, no training); "
        f"alternating rounds, median ms per trial; journal entries are the file's lines, "
        f"writes its locked, flushed appends. Goal: diff <= {GOAL_MS:g} ms. {args.note}\n\n"
        + head
        + "\n".join(table)
    )
    write_section(TITLE, body)


if __name__ == "__main__":
    main()
