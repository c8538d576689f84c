"""``tunekit report`` (a run's HTML report, or a study's dashboard) and ``tunekit diagnose``."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from tunekit.errors import TunekitError


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write a run's (or a study's) report as one self-contained HTML file",
        description=(
            "Write RUN_DIR's report: train loss with its moving average, validation metrics, LR, "
            "update/weight ratios per layer, gradient norms, activation statistics, events and what "
            "the curves show. With --study, write a search study's dashboard instead."
        ),
    )
    p.add_argument(
        "run_dir",
        nargs="?",
        default=None,
        metavar="RUN_DIR",
        help="a run directory (the --out of train)",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="HTML file to write (default: RUN_DIR/report.html)",
    )
    p.add_argument(
        "--study",
        default=None,
        metavar="NAME",
        help="a search study's dashboard instead of a run's report",
    )
    p.add_argument(
        "--compare",
        default=None,
        metavar="NAME",
        help="with --study: a second study to compare against",
    )
    p.add_argument(
        "--storage", default=None, metavar="URL", help="with --study: the Optuna storage URL"
    )
    p.set_defaults(func=cmd_report)


def add_diagnose_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diagnose",
        help="read a run's learning curves and say what they show",
        description=(
            "Read RUN_DIR/metrics.jsonl and name what the curves show (diverging loss, a flat start, a "
            "plateau, an early LR decay, a metric still improving, overfitting, underfitting), with the "
            "numbers behind each verdict and what to do."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (the --out of train)")
    p.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    p.set_defaults(func=cmd_diagnose)


def cmd_report(args: argparse.Namespace) -> int:
    # With --study, --out may also name the study directory to read (as search's --out did).
    if args.out is not None and (args.study is None or args.out.endswith(".html")):
        from tunekit.outputs import check_output_file

        check_output_file(args.out)
    if args.study is not None:
        if args.run_dir is not None:
            raise TunekitError("give either RUN_DIR or --study, not both", field="report")
        try:
            from tunekit.search import study_report
        except ImportError as exc:
            raise TunekitError(
                f"study reports need tunekit.search, which failed to import ({exc})",
                field="--study",
            ) from None
        path = study_report(args.study, args.out, args.compare, args.storage)
    else:
        if args.run_dir is None:
            raise TunekitError("give a run directory (RUN_DIR) or --study NAME", field="report")
        if args.compare is not None or args.storage is not None:
            raise TunekitError(
                "--compare and --storage go with --study",
                field="--compare" if args.compare else "--storage",
            )
        from ._html import write_report

        path = write_report(args.run_dir, args.out)
    print(f"report: {path}")
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ._diagnose import diagnose

    verdicts = diagnose(args.run_dir)
    if args.json:
        print(json.dumps([asdict(v) for v in verdicts], indent=2))
        return 0
    console = Console()
    if not verdicts:
        console.print(
            "[green]nothing wrong in the curves[/green] (checked: divergence, flat start, plateau, "
            "early decay, still improving, overfitting, underfitting)"
        )
    for v in verdicts:
        console.print(f"[bold red]{v.title}[/bold red]: {v.evidence}.", soft_wrap=True)
        console.print(f"  -> {v.advice}", soft_wrap=True)
    return 0
