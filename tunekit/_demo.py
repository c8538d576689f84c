"""``tunekit demo``: the whole recipe on the bundled digits data, end to end.

sanity (steps 1-3) -> search (steps 4-7, starting from the sanity LR) ->
study dashboard and the best trial's report -> ensemble of the top trials.
Each step is the same command a user would type; the demo only chains them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from tunekit.errors import TunekitError


def add_demo_parser(
    sub: argparse._SubParsersAction, *, run: Callable[[Sequence[str]], int]
) -> None:
    """Adds ``demo``; ``run`` is the command line's entry point (``tunekit.cli.main``)."""
    p = sub.add_parser(
        "demo",
        help="run sanity -> search -> report -> ensemble on the digits data",
        description="The whole tuning recipe on scikit-learn's bundled digits, a few minutes on 2 CPU cores.",
    )
    p.add_argument("--out", default="runs/demo", help="where everything goes (default runs/demo)")
    p.add_argument("--recipe", default="recipes/digits.yaml")
    p.add_argument("--study", default="digits")
    p.set_defaults(func=partial(cmd_demo, run=run))


def cmd_demo(args: argparse.Namespace, *, run: Callable[[Sequence[str]], int]) -> int:
    """Runs each step as ``run(argv)``, the command a user would type."""
    from rich.console import Console

    from tunekit.outputs import check_output_dir

    console = Console()
    out = check_output_dir(args.out)
    sanity_dir, study_dir = out / "sanity", out / "search"
    ensemble = out / "ensemble.pt"

    def step(title: str, argv: list[str]) -> int:
        console.rule(f"[bold]{title}")
        console.print("$ tunekit " + " ".join(argv), style="dim")
        return run(argv)

    rc = step(
        "1-3. sanity: initial loss, overfit a small sample, learning rate",
        ["sanity", "--recipe", args.recipe, "--out", str(sanity_dir)],
    )
    if rc not in (0, 1):
        return rc
    sanity_json = sanity_dir / "sanity.json"
    search = ["search", "--study", args.study, "--out", str(study_dir)]
    if rc == 0 and sanity_json.is_file():
        search += ["--from-sanity", str(sanity_json)]
    else:
        console.print(
            "a sanity check failed: the search starts from the study's own ranges", style="yellow"
        )
    rc = step("4-7. search: coarse random search, refined ranges, longer training", search)
    if rc != 0:
        return rc
    summary = json.loads((study_dir / "summary.json").read_text())
    best = summary.get("best") or {}
    run_dir = best.get("run_dir")
    rc = step("study dashboard", ["report", "--study", args.study, "--out", str(study_dir)])
    if rc != 0:
        return rc
    if run_dir:
        rc = step("the best trial's learning curves", ["report", run_dir])
        if rc != 0:
            return rc
        step("what the curves say", ["diagnose", run_dir])
    storage = study_dir / "study.journal"
    rc = step(
        "ensemble of the top 3 trials, exported as one file",
        [
            "ensemble",
            "export",
            "--study",
            args.study,
            "--storage",
            str(storage),
            "--top-k",
            "3",
            "--out",
            str(ensemble),
        ],
    )
    if rc != 0:
        return rc
    console.rule("[bold]outputs")
    rows = [
        ("sanity verdicts", sanity_dir / "sanity.html"),
        ("study summary", study_dir / "summary.json"),
        ("study dashboard", study_dir / "report.html"),
        ("best trial's report", Path(run_dir) / "report.html" if run_dir else None),
        ("ensemble", ensemble),
    ]
    for name, path in rows:
        if path is not None and not path.exists():
            raise TunekitError(f"the demo expected {path} to exist after its step ({name})")
        console.print(f"{name:>20}: {path}")
    if best:
        console.print(
            f"best trial: {summary['metric']} = {best.get('value'):.4f} with {best.get('params')} ({best.get('stage')})"
        )
    return 0
