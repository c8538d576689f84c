"""``tunekit search`` and ``tunekit dashboard``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from tunekit.cliargs import add_overrides_arg
from tunekit.errors import TunekitError


def add_search_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="coarse-to-fine hyperparameter search (Optuna)",
        description="Run a study: a coarse random search, then ranges refined around the best "
        "trials with longer training, and further rounds. Re-run the command to resume; run it "
        "on several machines against one --storage URL to share the work.",
    )
    p.add_argument("--study", required=True, help="a study name (studies/NAME.yaml) or a path")
    p.add_argument(
        "--storage",
        default=None,
        help="Optuna storage URL (default: a journal file in the study directory)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="trials at once on this machine (default: the study's)",
    )
    p.add_argument(
        "--out", default=None, help="study directory (default: <output_dir>/<study name>)"
    )
    add_overrides_arg(
        p,
        help="override a study field (workers=2, stages.coarse.trials=8) or a recipe field "
        "(recipe.optim.momentum=0.8); repeatable",
    )
    p.add_argument(
        "--from-sanity",
        default=None,
        metavar="FILE",
        help="start lr/weight-decay ranges from sanity.json",
    )
    p.add_argument("--no-progress", action="store_true", help="no live table")
    p.add_argument("--as-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--trial-stage", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_search)


def add_dashboard_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dashboard",
        help="optuna-dashboard on a study and TensorBoard on its trials",
        description="Serve optuna-dashboard on the study's storage and TensorBoard on its trial runs.",
    )
    p.add_argument("--study", required=True, help="a study name or path")
    p.add_argument(
        "--storage",
        default=None,
        help="Optuna storage URL (default: the study directory's journal)",
    )
    p.add_argument(
        "--out", default=None, help="study directory (default: <output_dir>/<study name>)"
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8080, help="optuna-dashboard port")
    p.add_argument("--tb-port", type=int, default=6006, help="TensorBoard port (0: no TensorBoard)")
    p.set_defaults(func=cmd_dashboard)


def cmd_search(args: argparse.Namespace) -> int:
    from ._study import load_study

    load_study(args.study, args.overrides)  # a bad study file fails here, before torch and optuna
    import optuna

    from ._signals import Stopped, exit_code, stop_on_signals
    from ._spawn import spawn_workers, wait_workers, worker_exits
    from ._trial import run_trial_ddp
    from ._validate import check_workers, prepare_search
    from ._worker import run_worker

    plan = prepare_search(
        args.study,
        overrides=args.overrides,
        out=args.out,
        storage=args.storage,
        from_sanity=args.from_sanity,
        workers=args.workers,
    )
    # Per-layer warnings stay in each trial's run directory; the terminal shows the trials.
    logging.getLogger("tunekit.diagnostics").setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.trial_stage:
        run_trial_ddp(plan.open(), args.trial_stage)
        return 0
    if args.as_worker:
        # The parent's SIGTERM (or its death) stops the trial as Ctrl-C does: failed, queued again.
        try:
            with stop_on_signals(sigint=True):
                run_worker(plan.open())
        except KeyboardInterrupt as exc:
            return exit_code(exc)  # the parent says what happened, once
        return 0
    workers = args.workers if args.workers is not None else plan.study.workers
    # Every check comes before the storage is created: a mistake leaves no files behind.
    check_workers(plan.study, workers, file=str(plan.study_file))
    preflight_data(plan)
    ctx = plan.open()
    print(
        f"study {ctx.study.name}: directory {ctx.study_dir}, storage {ctx.storage_desc}",
        file=sys.stderr,
    )
    started = time.perf_counter()
    procs: list[Any] = []
    try:
        with stop_on_signals(), _live(ctx, enabled=not args.no_progress):
            if workers == 1 and ctx.study.trial_gpus == 1:
                run_worker(ctx)
            else:
                procs = spawn_workers(ctx, workers)
                wait_workers(procs)
    except KeyboardInterrupt as exc:
        _finish(ctx, time.perf_counter() - started)
        how = f" ({exc.args[0]})" if isinstance(exc, Stopped) else ""
        print(
            f"tunekit: interrupted{how}; the study is saved — run the same command again to resume",
            file=sys.stderr,
        )
        return exit_code(exc)
    summary = _finish(ctx, time.perf_counter() - started)
    exits = worker_exits(procs)
    if not summary["complete"]:
        why = "; ".join([*exits, str(summary["unfinished"])])
        print(
            f"tunekit: error: the search stopped before its plan was done: {why}; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        # A worker's own mistake (missing data, a bad value) keeps the usage code it printed with.
        return 2 if any(p.returncode == 2 for p in procs) else 1
    for line in exits:
        print(f"tunekit: warning: {line}; the plan was finished without it", file=sys.stderr)
    print_study_summary(summary)
    return 0


def preflight_data(plan: Any) -> None:
    """Builds the first stage's data and model once, so a missing dataset fails in one line before any trial."""
    if plan.recipe_path is None:
        return  # a Python objective reads its own data; importing it was the check
    from tunekit.run import check_inputs

    from ._objective import trial_recipe
    from ._space import check_points

    spec, space = plan.study.stages[0], plan.space
    corner = check_points(space)[0]
    recipe = trial_recipe(plan.study, plan.recipe_data, spec, corner, file=str(plan.recipe_path))
    try:
        check_inputs(recipe, nproc=plan.study.trial_gpus, file=str(plan.recipe_path))
    except TunekitError as exc:
        # The data's own hint names recipe fields; from `tunekit search` they are set as recipe.*.
        message = exc.message.replace("--set data.", "--set recipe.data.")
        raise type(exc)(message, file=exc.file, field=exc.field) from None


class _live:
    def __init__(self, ctx: Any, enabled: bool) -> None:
        self.ctx, self.enabled = ctx, enabled
        self.table: Any = None

    def __enter__(self) -> None:
        if not self.enabled:
            return
        from ._progress import LiveTable
        from ._stages import StagedSearch
        from ._storage import open_storage

        # Its own storage connection: the table's reads never wait on the trials' writes.
        storage = open_storage(self.ctx.storage_url, self.ctx.study_dir, self.ctx.study.liveness)
        monitor = StagedSearch(self.ctx.study, storage, base_space=self.ctx.search.base_space)
        self.table = LiveTable(monitor)
        self.table.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self.table is not None:
            self.table.__exit__(*exc)


def _finish(ctx: Any, wall: float) -> dict[str, Any]:
    from ._report import write_hparams
    from ._worker import write_summary

    summary = write_summary(ctx)
    summary["wall_time_s"] = wall
    try:
        write_hparams(ctx.search, ctx.study_dir / "tensorboard")
    except Exception as exc:  # a dashboard must never cost the study its summary
        print(f"tunekit: warning: TensorBoard hparams not written: {exc}", file=sys.stderr)
    return summary


def print_study_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"study {summary['study']} — {summary['metric']} ({summary['direction']})")
    for col in ("stage", "sampler", "epochs", "trials", "done", "pruned", "failed", "best"):
        table.add_column(col)
    for st in summary["stages"]:
        c = st["counts"]
        best = st["best"]["value"] if st["best"] else None
        table.add_row(
            st["name"],
            st["sampler"],
            str(st["epochs"]),
            str(st["trials_planned"]),
            str(c["complete"]),
            str(c["pruned"]),
            str(c["failed"] - c["retried"]),
            f"{best:.4f}" if best is not None else "-",
        )
    console.print(table)
    for st in summary["stages"]:
        if st.get("repeat"):
            continue
        cells = st.get("cells") or []
        for c in cells if len(cells) > 1 else [{"cell": "", "ranges": st["ranges"]}]:
            ranges = ", ".join(
                f"{k} {_range_text(v)}"
                for k, v in c["ranges"].items()
                if k not in c.get("values", {})
            )
            where = f"{st['name']} {c['cell']}" if c["cell"] else st["name"]
            console.print(f"{where} ranges: {ranges}")
        for flag in st["edge_flags"]:
            console.print(f"[yellow]edge[/] ({st['name']}): {flag}")
    print_cells(summary)
    best = summary["best"]
    if best:
        params = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in best["params"].items()
        )
        console.print(
            f"best {summary['metric']}: {best['value']:.4f} (stage {best['stage']}, trial {best['trial']}): {params}"
        )
        noise = next((st["noise"] for st in summary["stages"] if st["name"] == best["stage"]), None)
        if noise and len(noise["trials"]) > 1:
            console.print(
                f"[yellow]noise[/]: one standard error on {noise['val_size']} validation items is "
                f"{noise['se']:.4f}; {len(noise['trials']) - 1} other trial(s) of stage {best['stage']} "
                f"score within two of the best ({', '.join(map(str, noise['trials']))}), so this "
                "validation set cannot rank them: rerun them with other seeds, or ensemble them"
            )
        print(f"best run directory: {best['run_dir']}")
    for r in summary.get("retries", []):
        print(
            f"{r['stage']}: trial {r['trial']} ({r['reason']}) was retried as trial {r['retried_as']}"
        )
    print(f"study directory: {summary['study_dir']}")


def print_cells(summary: dict[str, Any]) -> None:
    """Each cell's best trial and, after a repeat stage, its mean ± 95% interval over seeds."""
    cells = summary.get("cells") or []
    if len(cells) < 2 and not summary.get("repeats"):
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"cells — best {summary['metric']} per value of the scientific parameters")
    repeats = summary.get("repeats") or []
    columns = ["cell", "best", "stage", "trial"]
    for rep in repeats:
        columns += [f"{rep['stage']}: mean ± 95% CI", "n", "vs best"]
    for col in columns:
        table.add_column(col)
    for c in cells:
        b = c["best"]
        row = [c["cell"] or "-", f"{b['value']:.4f}" if b else "-"]
        row += [b["stage"], str(b["trial"])] if b else ["-", "-"]
        for rep in repeats:
            r = rep["cells"].get(c["cell"], {})
            if r.get("ci95"):
                lo, hi = r["ci95"]
                row.append(f"{r['mean']:.4f} ± {(hi - lo) / 2:.4f}")
            else:
                row.append(f"{r['mean']:.4f}" if r.get("mean") is not None else "-")
            row.append(str(r.get("n", 0)))
            same = r.get("indistinguishable_from_best")
            row.append(
                "best"
                if c["cell"] == rep["best_cell"]
                else "-"
                if same is None
                else f"{'indistinguishable' if same else 'worse'} (p={r['p_vs_best']:.3g})"
            )
        table.add_row(*row)
    Console().print(table)
    for rep in repeats:
        print(f"{rep['stage']}: {rep['rule']}")


def _range_text(r: dict[str, Any]) -> str:
    if r.get("choices") is not None:
        return "{" + ", ".join(str(c) for c in r["choices"]) + "}" + _when_text(r)
    log = "log " if r["type"] == "log_uniform" else ""
    return f"{log}[{r['low']:.3g}, {r['high']:.3g}]" + _when_text(r)


def _when_text(r: dict[str, Any]) -> str:
    when = r.get("when") or {}
    return "".join(f" when {k} in {{{', '.join(str(v) for v in vs)}}}" for k, vs in when.items())


def cmd_dashboard(args: argparse.Namespace) -> int:
    from ._dashboard import serve

    return serve(
        args.study,
        out=args.out,
        storage=args.storage,
        host=args.host,
        port=args.port,
        tb_port=args.tb_port,
    )


__all__ = ["add_dashboard_parser", "add_search_parser"]
