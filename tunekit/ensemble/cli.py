"""``tunekit ensemble export`` and ``tunekit ensemble eval``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tunekit.errors import TunekitError


def _add_source(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", metavar="DIR", help="a run directory (its snapshots by default)")
    src.add_argument(
        "--study", metavar="NAME", help="an Optuna study: ensemble its --top-k best trials"
    )
    p.add_argument(
        "--members",
        default=None,
        choices=("snapshots", "ema", "swa", "best", "last"),
        help="with --run: the run's snapshots (default), its EMA or SWA model, or a checkpoint",
    )
    p.add_argument(
        "--last",
        type=int,
        default=None,
        metavar="M",
        help="with --run: the last M snapshots (default: the recipe's ensemble_last)",
    )
    p.add_argument(
        "--storage", metavar="URL", help="with --study: Optuna storage URL or journal file"
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=None,
        metavar="K",
        help="with --study: how many of the best trials (default 3)",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        choices=("best", "last"),
        help="with --study: each trial's best (default) or last checkpoint",
    )
    p.add_argument(
        "--merge",
        default="nms",
        choices=("nms", "wbf"),
        help="detectors: class-wise NMS or weighted box fusion",
    )
    p.add_argument("--device", default="cpu", help="where to evaluate (cpu or cuda)")


def add_ensemble_parser(sub: argparse._SubParsersAction) -> None:
    """Adds ``tunekit ensemble {export,eval}``."""
    p = sub.add_parser(
        "ensemble",
        help="evaluate and export ensembles (snapshots, EMA, top-k trials)",
        description="Evaluate an ensemble beside its members, or export it as one deployable file.",
    )
    inner = p.add_subparsers(dest="ensemble_command", required=True, metavar="ACTION")
    exp = inner.add_parser(
        "export",
        help="write the ensemble as one TorchScript / torch.export / ONNX file",
        description="Write one file that runs every member and averages their probabilities "
        "(classifiers) or merges their boxes (detectors), with a metadata record inside.",
    )
    _add_source(exp)
    exp.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="FILE.pt (TorchScript), FILE.pt2 (torch.export) or FILE.onnx",
    )
    exp.add_argument(
        "--format",
        default=None,
        choices=("torchscript", "export", "onnx"),
        help="override the format the suffix picks",
    )
    exp.add_argument(
        "--no-eval", action="store_true", help="skip measuring the members on the validation set"
    )
    exp.set_defaults(func=cmd_export)
    ev = inner.add_parser(
        "eval",
        help="a table: each member, the run's model and its EMA, and the ensemble",
        description="Measure each member, the run's own model and EMA/SWA model, and the ensemble on the validation set.",
    )
    _add_source(ev)
    ev.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")
    ev.set_defaults(func=cmd_eval)


#: Options that only one source reads; given with the other, they would be ignored.
_SOURCE_OPTIONS = {
    "--run": ("members", "last"),
    "--study": ("storage", "top_k", "checkpoint"),
}


def _select(args: argparse.Namespace) -> tuple[Any, int | None]:
    """The members, and with --study the number asked for (a study may have fewer)."""
    from ._evaluate import select_from_run, select_from_study

    source, other = ("--run", "--study") if args.run else ("--study", "--run")
    for dest in _SOURCE_OPTIONS[other]:
        if getattr(args, dest) is not None:
            option = "--" + dest.replace("_", "-")
            raise TunekitError(f"{option} goes with {other}, not {source}", field=option)
    if args.last is not None and args.last < 1:
        raise TunekitError(
            f"value {args.last} is not allowed: --last must be 1 or more", field="--last"
        )
    if args.run:
        return select_from_run(args.run, args.members or "snapshots", args.last, args.device), None
    if not args.storage:
        raise TunekitError(
            "--study needs --storage (the study's Optuna storage URL, or its journal file, e.g. "
            "runs/search/NAME/study.journal)",
            field="--storage",
        )
    k = 3 if args.top_k is None else args.top_k
    selection = select_from_study(
        args.study, args.storage, k, args.checkpoint or "best", args.device
    )
    n = len(selection.members)
    if n < k:
        # "The best 50" of a study with 8 is all 8; said, since the user may expect 50.
        verb = "exporting" if args.ensemble_command == "export" else "evaluating"
        trials = "trial" if n == 1 else "trials"
        print(
            f"tunekit: warning: asked for {k} members, study {args.study!r} has {n} complete "
            f"{trials}; {verb} {n}",
            file=sys.stderr,
        )
    return selection, k


def cmd_eval(args: argparse.Namespace) -> int:
    from ._evaluate import comparison

    selection, _ = _select(args)
    rows = comparison(selection, merge=args.merge)
    print_rows(rows, f"{selection.origin} — validation set of {selection.context.recipe.name}")
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in rows], indent=2, allow_nan=True))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tunekit.outputs import check_output_file

    from ._evaluate import build_ensemble, comparison, example_input, export_metadata
    from ._export import export_ensemble

    check_output_file(args.out)  # before the members are loaded and evaluated
    selection, requested = _select(args)
    n = len(selection.members)
    rows = None if args.no_eval else comparison(selection, merge=args.merge)
    if rows:
        print_rows(rows, selection.origin)
    module = build_ensemble(selection, merge=args.merge)
    metadata = export_metadata(selection, rows)
    if requested is not None:
        metadata["top_k"] = {"requested": requested, "exported": n}
    result = export_ensemble(
        module,
        example_input(selection.context),
        args.out,
        metadata,
        fmt=args.format,
    )
    print(
        f"wrote {result.path} ({result.format}, {n} member{'' if n == 1 else 's'}); "
        f"max abs difference from the eager ensemble: {result.max_abs_diff:.2e}"
    )
    return 0


def print_rows(rows: list[Any], title: str) -> None:
    """Renders comparison rows as a rich table (metrics as columns)."""
    from rich.console import Console
    from rich.table import Table

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r.metrics if k not in keys]
    table = Table(title=title)
    table.add_column("model")
    table.add_column("kind")
    for k in keys:
        table.add_column(k.replace("val/loss", "val/NLL"), justify="right")
    for r in rows:
        style = "bold" if r.kind == "ensemble" else None
        table.add_row(
            r.name,
            r.kind,
            *[f"{r.metrics[k]:.4f}" if k in r.metrics else "-" for k in keys],
            style=style,
        )
    Console(width=max(100, 24 + 14 * len(keys))).print(table)
