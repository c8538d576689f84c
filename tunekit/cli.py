"""The ``tunekit`` command: a thin layer over the library.

Each command lives with its concept (``tunekit/<concept>/cli.py``) and adds
its own subparser; this file only wires them and turns a user's mistake
(:class:`TunekitError`) into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence

from tunekit.cliargs import add_recipe_args
from tunekit.errors import TunekitError

EXIT_USAGE = 2
EXIT_NON_FINITE = 3


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a recipe", description="Train a model from a recipe YAML."
    )
    add_recipe_args(p)
    p.add_argument(
        "--resume",
        nargs="?",
        const="last",
        default=None,
        metavar="auto|FILE",
        help=(
            "continue from the run directory's last checkpoint (an error if there is none); "
            "'--resume auto': continue if there is one, else start (for preemptible jobs); "
            "'--resume FILE': continue from that checkpoint"
        ),
    )
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="processes (GPUs) on this machine, launched with torchrun",
    )
    p.add_argument("--no-progress", action="store_true", help="no live progress bar")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from tunekit.config import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.nproc < 1:
        raise TunekitError(
            f"value {args.nproc} is not allowed: use 1 or more processes", field="--nproc"
        )
    # torch comes in here, after the recipe and the flags are known to be good.
    from tunekit.core import launch
    from tunekit.run import check_inputs, resolve_run_dir, train

    under_torchrun = "RANK" in os.environ
    if args.nproc > 1 and not under_torchrun:
        from tunekit.outputs import LOCKED_BY_PARENT_ENV, RunDirLock, is_empty_run_dir

        run_dir, ckpt = resolve_run_dir(recipe, args.out, args.resume)
        check_inputs(recipe, nproc=args.nproc, file=args.recipe)
        if ckpt is not None:
            from tunekit.core import load_checkpoint

            load_checkpoint(ckpt)  # a bad file is reported here, once, not by every worker
        argv = ["train", "--recipe", args.recipe, "--out", str(run_dir), "--no-progress"]
        for o in args.overrides:
            argv += ["--set", o]
        if ckpt is not None:
            argv += ["--resume", str(ckpt)]
        # The launcher holds the run directory for its workers, so a second launcher is
        # refused before it starts any process.
        created = not run_dir.exists()
        with RunDirLock(run_dir, field="--out" if args.out else "output_dir"):
            rc = launch(args.nproc, argv, env={LOCKED_BY_PARENT_ENV: str(run_dir.resolve())})
            if rc != 0 and created and is_empty_run_dir(run_dir):
                shutil.rmtree(run_dir, ignore_errors=True)  # the workers stopped before training
        if rc != 0:
            print(
                f"tunekit: error: training failed in a worker process (exit code {rc})",
                file=sys.stderr,
            )
            return rc if rc != 0 else 1
        summary = json.loads((run_dir / "summary.json").read_text())
    else:
        from tunekit.core import shutdown_distributed

        summary = train(
            recipe,
            out=args.out,
            resume=args.resume,
            progress=not args.no_progress,
            file=args.recipe,
        )
        # Under torchrun: a process that exits with its gloo group still alive can abort in the
        # group's destructor ("terminate called without an active exception"). On an error the
        # group is left to torchrun, which stops every rank.
        shutdown_distributed()
        if int(os.environ.get("RANK", "0")) != 0:
            return 0
    print_summary(summary)
    return 0


def print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(
        title=f"{summary['recipe']} — {summary['epochs_run']}/{summary['epochs_planned']} epochs"
    )
    table.add_column("metric")
    table.add_column("final", justify="right")
    for k, v in summary["final"].items():
        # "ema/val/top1", "snapshots/val/loss", ...: averaged models beside the model itself
        if k.startswith(("val/", "train/")) or "/val/" in k:
            table.add_row(k, f"{v:.4f}")
    console.print(table)
    best = summary["best"]
    if best["value"] is not None:
        console.print(f"best {summary['metric']}: {best['value']:.4f} (epoch {best['epoch']})")
    if summary.get("stop_reason"):
        console.print(f"stopped: {summary['stop_reason']}")
    console.print(f"wall time: {summary['wall_time_s']:.1f}s")
    print(f"run directory: {summary['run_dir']}")


#: Each entry adds one subcommand to the parser.
REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [_add_train]


def _add_search(sub: argparse._SubParsersAction) -> None:
    from tunekit.search.cli import add_dashboard_parser, add_search_parser

    add_search_parser(sub)
    add_dashboard_parser(sub)


REGISTRARS.append(_add_search)


def _add_report(sub: argparse._SubParsersAction) -> None:
    from tunekit.report.cli import add_diagnose_parser, add_report_parser

    add_report_parser(sub)
    add_diagnose_parser(sub)


REGISTRARS.append(_add_report)


def _add_ensemble(sub: argparse._SubParsersAction) -> None:
    from tunekit.ensemble.cli import add_ensemble_parser

    add_ensemble_parser(sub)


REGISTRARS.append(_add_ensemble)


def _add_data(sub: argparse._SubParsersAction) -> None:
    from tunekit.detection.cli import add_data_command

    add_data_command(sub)


REGISTRARS.append(_add_data)


def _add_sanity(sub: argparse._SubParsersAction) -> None:
    from tunekit.sanity.cli import add_lr_find, add_sanity

    add_sanity(sub)
    add_lr_find(sub)


REGISTRARS.append(_add_sanity)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from tunekit._demo import add_demo_parser

    # The demo chains the commands a user types; it is handed `main` rather than importing it.
    add_demo_parser(sub, run=main)


REGISTRARS.append(_add_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunekit",
        description="The deep-learning tuning recipe as commands: sanity, search, report, ensemble.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in REGISTRARS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TunekitError as exc:
        print(f"tunekit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FloatingPointError as exc:
        from tunekit.diagnostics import NonFiniteError

        if not isinstance(exc, NonFiniteError):
            raise
        # The run diverged (not a user's mistake): one line, exit 3; the last checkpoint is kept.
        print(f"tunekit: error: {exc}", file=sys.stderr)
        return EXIT_NON_FINITE
    except KeyboardInterrupt:
        print(
            "tunekit: interrupted; what was saved is kept (resume with --resume)", file=sys.stderr
        )
        return 130


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
