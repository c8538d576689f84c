"""CPU time of the ``tunekit`` command before it does any work: help pages and one-line errors.

Each command runs as its own process; its CPU time is the user + system time
the kernel reports for that child (``os.wait4``), so the load of other jobs on
the machine does not count, only what the command itself computes. The
commands run round-robin, ``--reps`` times each, and the table gives medians,
next to ``python -c pass`` (the interpreter alone) and
``python -c "import torch"``. Goal: every tunekit row <= 1 s CPU.

    python benchmarks/startup.py                           # writes its section of RESULTS.md
    python benchmarks/startup.py --reps 3 --save before.json --no-write
    python benchmarks/startup.py --before before.json      # adds a "before" column
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TITLE = "Start-up time (benchmarks/startup.py)"
GOAL_S = 1.0

#: A recipe with one unknown key: ``train --recipe`` must refuse it in one line.
BAD_RECIPE = "name: bad\ntrain:\n  epochs: 1\n  epohcs: 2\n"
#: A study with one unknown key, next to a recipe it could otherwise use.
BAD_STUDY = (
    "name: bad\nrecipe: {recipe}\nmetric: val/top1\ndirection: maximize\n"
    "space:\n  optim.lr: {{type: log_uniform, low: 0.001, high: 1.0}}\n"
    "stages:\n  - {{name: coarse, trials: 2, epochs: 1}}\nworkerz: 2\n"
)


def tunekit_command() -> list[str]:
    """The installed ``tunekit`` script next to this interpreter, or ``python -m tunekit``."""
    script = Path(sys.executable).parent / "tunekit"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tunekit"]


def subcommands() -> list[list[str]]:
    """Every command path of the parser (``train``, ``ensemble export``, ...), read from it."""
    from tunekit.cli import build_parser

    found: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    found.append([*prefix, name])
                    walk(child, [*prefix, name])

    walk(build_parser(), [])
    return found


def commands(tmp: Path, help_pages: str) -> dict[str, tuple[list[str], int]]:
    """label -> (argv, expected exit code)."""
    py, tk = sys.executable, tunekit_command()
    recipe, study = tmp / "bad.yaml", tmp / "bad_study.yaml"
    recipe.write_text(BAD_RECIPE)
    study.write_text(BAD_STUDY.format(recipe=ROOT / "recipes" / "digits.yaml"))
    out: dict[str, tuple[list[str], int]] = {
        "python -c pass": ([py, "-c", "pass"], 0),
        'python -c "import torch"': ([py, "-c", "import torch"], 0),
        "tunekit --help": ([*tk, "--help"], 0),
    }
    paths = subcommands() if help_pages == "all" else [["train"]]
    for path in paths:
        out[f"tunekit {' '.join(path)} --help"] = ([*tk, *path, "--help"], 0)
    out["tunekit train --recipe bad.yaml (unknown key)"] = (
        [*tk, "train", "--recipe", str(recipe), "--out", str(tmp / "run")],
        2,
    )
    out["tunekit sanity --recipe bad.yaml (unknown key)"] = (
        [*tk, "sanity", "--recipe", str(recipe), "--out", str(tmp / "run")],
        2,
    )
    out["tunekit search --study bad_study.yaml (unknown key)"] = (
        [*tk, "search", "--study", str(study), "--out", str(tmp / "study")],
        2,
    )
    return out


def run_once(argv: list[str], expect: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of ``argv``; fails when the exit code is not ``expect``."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    proc.stderr.close()
    if proc.returncode != expect:
        raise SystemExit(
            f"{' '.join(argv)}: exit code {proc.returncode}, expected {expect}\n{err.decode()}"
        )
    return usage.ru_utime + usage.ru_stime, wall


def measure(cmds: dict[str, tuple[list[str], int]], reps: int) -> dict[str, dict[str, list[float]]]:
    times: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "wall": []} for k in cmds}
    for r in range(reps):
        for label, (argv, expect) in cmds.items():
            cpu, wall = run_once(argv, expect)
            times[label]["cpu"].append(cpu)
            times[label]["wall"].append(wall)
        print(f"round {r + 1}/{reps} done", file=sys.stderr)
    return times


def table(
    times: dict[str, dict[str, list[float]]], before: dict[str, dict[str, list[float]]] | None
) -> str:
    torch_cpu = statistics.median(times['python -c "import torch"']["cpu"])
    head = "| command | CPU s (median) | CPU s (min-max) | wall s (median) | CPU / import torch |"
    rule = "|---|---|---|---|---|"
    if before is not None:
        head += " CPU s before |"
        rule += "---|"
    lines = [head, rule]
    for label, t in times.items():
        cpu = statistics.median(t["cpu"])
        tk = label.startswith("tunekit")
        shown = f"**{cpu:.2f}**" if tk else f"{cpu:.2f}"
        row = (
            f"| `{label}` | {shown} | {min(t['cpu']):.2f}-{max(t['cpu']):.2f} | "
            f"{statistics.median(t['wall']):.2f} | {cpu / torch_cpu:.2f} |"
        )
        if before is not None:
            b = before.get(label)
            row += f" {statistics.median(b['cpu']):.2f} |" if b else " - |"
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--reps", type=int, default=5, help="runs of each command (default 5)")
    p.add_argument(
        "--help-pages",
        choices=("all", "train"),
        default="all",
        help="every subcommand's --help (default) or train's only",
    )
    p.add_argument("--save", metavar="FILE", help="also write the raw times as JSON")
    p.add_argument(
        "--label", default="", help="with --save: what was measured (e.g. the commit), kept in FILE"
    )
    p.add_argument("--before", metavar="FILE", help="a --save file to show as a 'before' column")
    p.add_argument("--no-write", action="store_true", help="print the table, leave RESULTS.md")
    args = p.parse_args()

    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        cmds = commands(Path(tmp), args.help_pages)
        times = measure(cmds, args.reps)
    load_end = os.getloadavg()[0]
    run = {
        "label": args.label,
        "reps": args.reps,
        "load": [round(load_start, 1), round(load_end, 1)],
        "times": times,
    }
    if args.save:
        Path(args.save).write_text(json.dumps(run, indent=1))
    before = json.loads(Path(args.before).read_text()) if args.before else None
    worst = max(statistics.median(t["cpu"]) for k, t in times.items() if k.startswith("tunekit"))

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import machine, write_section

    body = f"""`python benchmarks/startup.py --reps {args.reps}` — each command a fresh process, its CPU
time (user + system of that child, from `os.wait4`) and wall time; {args.reps} round-robin
rounds, medians. Goal: every `tunekit` row <= {GOAL_S:g} s CPU.

Machine: {machine()}; load average {load_start:.1f} at the start, {load_end:.1f} at the end.

{table(times, before and before["times"])}

Slowest tunekit row: **{worst:.2f} s CPU** (goal <= {GOAL_S:g} s).
"""
    if before:
        body += (
            f"\nCPU s before: {before['label'] or args.before}, {before['reps']} rounds, load "
            f"average {before['load'][0]:.1f} to {before['load'][1]:.1f}.\n"
        )
    body += """
Every command used to import torch, torchvision, optuna and plotly before it read its
arguments (`import tunekit` alone imported them). The parser is now built from modules that
import only the standard library; a package's public names are imported on first use
(`tunekit/_lazy.py`), and each command imports torch only after its flags, its recipe and its
study file are known to be good. What is left in the error rows is reading and checking the YAML
(PyYAML and pydantic). The CPU figures count only the measured process, so the load of other
jobs moves them less than the wall times, which are shown as taken.
"""
    print(body)
    if not args.no_write:
        write_section(TITLE, body)


if __name__ == "__main__":
    main()
