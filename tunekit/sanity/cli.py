"""``tunekit sanity`` (all three checks) and ``tunekit lr-find`` (the LR check alone)."""

from __future__ import annotations

import argparse
from typing import Any

from tunekit.cliargs import add_recipe_args

EXIT_FAILED = 1

#: The suggestion rules of ``--rule``, the default first (``tunekit.sanity.RULES``, named here
#: so that ``--help`` and a bad flag do not import torch; a test keeps the two the same).
RULE_NAMES = ("steepest", "valley", "min10")

#: ``--only`` names -> the check names of SanityOptions.checks
_CHECKS = {"initial-loss": "initial_loss", "overfit": "overfit", "lr": "lr"}


def _add_common(p: argparse.ArgumentParser) -> None:
    add_recipe_args(p)
    p.add_argument(
        "--start-lr", type=float, default=1e-7, help="first LR of the range test (default 1e-7)"
    )
    p.add_argument(
        "--end-lr", type=float, default=10.0, help="last LR of the range test (default 10)"
    )
    p.add_argument(
        "--lr-iters", type=int, default=100, help="steps of the range test (default 100)"
    )
    p.add_argument(
        "--cross-check-iters",
        type=int,
        default=100,
        help="steps of each short run in the LR cross-check (default 100)",
    )
    p.add_argument(
        "--refine-iters",
        type=_steps_or_auto,
        default=None,
        metavar="N|auto",
        help="steps of each run that refines the suggestion, judged on validation data "
        "(default auto: as long as the recipe's training, at most 300; 0 skips the refinement)",
    )
    p.add_argument(
        "--rule",
        choices=RULE_NAMES,
        default=RULE_NAMES[0],
        help="how the range test's suggestion is read off the loss curve: steepest "
        "(torch-lr-finder's, the default), valley (fastai's) or min10 (a tenth of the minimum's "
        "LR); see docs/sanity.md",
    )
    p.add_argument("--no-html", action="store_true", help="write sanity.json only, no HTML page")


def add_sanity(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sanity",
        help="check the initial loss, overfit a small sample, find a learning rate",
        description=(
            "Steps 1 to 3 of the tuning recipe on a recipe's model and data, with a PASS/WARN/FAIL "
            "verdict each. Writes sanity.json (read by `tunekit search --from-sanity`) and sanity.html. "
            "Exits 1 when a check fails."
        ),
    )
    _add_common(p)
    p.add_argument(
        "--overfit-batches",
        type=int,
        default=5,
        help="minibatches in the sample to overfit (default 5)",
    )
    p.add_argument(
        "--overfit-steps",
        type=int,
        default=300,
        help="step budget of the overfit check (default 300)",
    )
    p.add_argument(
        "--only",
        action="append",
        choices=list(_CHECKS),
        default=None,
        metavar="CHECK",
        help=f"run only this check (repeatable): {', '.join(_CHECKS)}",
    )
    p.set_defaults(func=cmd_sanity)


def _steps_or_auto(text: str) -> int | None:
    """``auto`` (None) or a whole number of steps."""
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of steps or 'auto'") from None


def add_lr_find(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lr-find",
        help="LR range test, cross-checked by short runs",
        description=(
            "An LR range test on a recipe's model and data, cross-checked by short runs at 1e-1..1e-4 "
            "and the suggestion, and the update/weight ratio at the chosen LR. Writes sanity.json and "
            "sanity.html."
        ),
    )
    _add_common(p)
    p.set_defaults(func=cmd_sanity, only=["lr"], overfit_batches=5, overfit_steps=300)


def cmd_sanity(args: argparse.Namespace) -> int:
    from tunekit.config import load_recipe, recipe_to_yaml
    from tunekit.errors import TunekitError

    for flag, value, low in (
        ("--lr-iters", args.lr_iters, 2),
        ("--cross-check-iters", args.cross_check_iters, 10),
        ("--overfit-batches", args.overfit_batches, 1),
        ("--overfit-steps", args.overfit_steps, 1),
    ):
        if value < low:
            raise TunekitError(f"value {value} is not allowed: use {low} or more", field=flag)
    if args.refine_iters is not None and (args.refine_iters < 0 or 0 < args.refine_iters < 10):
        raise TunekitError(
            f"value {args.refine_iters} is not allowed: use 0 (no refinement) or 10 or more",
            field="--refine-iters",
        )
    if not 0 < args.start_lr < args.end_lr:
        raise TunekitError(
            f"values {args.start_lr:g}..{args.end_lr:g} are not allowed: need 0 < --start-lr < --end-lr",
            field="--start-lr",
        )
    recipe = load_recipe(args.recipe, args.overrides)
    # torch comes in here, after the flags and the recipe are known to be good.
    from tunekit.run import resolve_run_dir

    from ._recipe import SanityOptions, run_sanity
    from ._report import write_report

    run_dir, _ = resolve_run_dir(recipe, args.out, None)
    options = SanityOptions(
        overfit_batches=args.overfit_batches,
        overfit_steps=args.overfit_steps,
        start_lr=args.start_lr,
        end_lr=args.end_lr,
        lr_iters=args.lr_iters,
        cross_check_iters=args.cross_check_iters,
        refine_iters=args.refine_iters,
        rule=args.rule,
        checks=tuple(_CHECKS[c] for c in args.only) if args.only else tuple(_CHECKS.values()),
    )
    from rich.console import Console

    console = Console()
    report = run_sanity(
        recipe,
        options=options,
        file=args.recipe,
        log=lambda msg: console.print(f"[dim]running: {msg}[/dim]"),
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text(recipe_to_yaml(recipe))
    paths = write_report(report, run_dir, html_page=not args.no_html)
    console.print(verdict_table(report))
    if report.lr is not None and report.lr.chosen is not None:
        space = report.to_dict()["search_space"]
        console.print(
            f"chosen LR: {report.lr.chosen:.3g} (optim.lr={report.recipe_lr(report.lr.chosen):.3g}), "
            f"{report.lr.chosen_by}; "
            f"search from lr {space['lr'][0]:.3g}..{space['lr'][1]:.3g}, "
            f"weight_decay {space['weight_decay'][0]:.3g}..{space['weight_decay'][1]:.3g}"
        )
    for path in paths.values():
        print(f"wrote {path}")
    return EXIT_FAILED if report.status == "FAIL" else 0


def verdict_table(report: Any) -> Any:
    """A rich table: one row per check with status, measured, expected, reason and fix."""
    from rich.table import Table

    colours = {"PASS": "green", "WARN": "yellow", "FAIL": "red"}
    table = Table(title=f"tunekit sanity — {report.recipe}: {report.status}", show_lines=True)
    for col in ("check", "status", "measured", "expected", "reason / fix"):
        table.add_column(col, overflow="fold")
    for v in report.verdicts:
        why = v.reason + (f"\n[bold]fix:[/bold] {v.fix}" if v.fix else "")
        table.add_row(v.check, f"[{colours[v.status]}]{v.status}[/]", v.measured, v.expected, why)
    return table
