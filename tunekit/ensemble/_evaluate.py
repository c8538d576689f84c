"""Choosing members and measuring them: the data behind ``tunekit ensemble eval`` and ``export``.

The rows are plain values (computed first, rendered by the CLI after), so
tests check the numbers and not a table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tunekit.averaging import Merge, ensemble_for_task
from tunekit.core import DistInfo

from ._export import describe_preprocessing
from ._members import (
    Member,
    RunContext,
    averaged_member,
    checkpoint_member,
    open_run,
    run_members,
)


@dataclass
class Selection:
    """The members of one ensemble and the run(s) they came from."""

    members: list[Member]
    contexts: list[RunContext]
    origin: str  # "run DIR" or "study NAME"
    # Reference models shown beside the members in ``eval`` (the run's final model, its EMA/SWA).
    references: list[Member] = field(default_factory=list)

    @property
    def context(self) -> RunContext:
        return self.contexts[0]


_REFERENCE_KINDS = {"EMA": "ema", "SWA": "swa"}


@dataclass
class Row:
    """One line of the comparison: a model and its validation metrics."""

    name: str
    kind: str  # "model", "ema", "swa", "member", "ensemble"
    metrics: dict[str, float]


def select_from_run(
    run_dir: str, kind: str = "snapshots", last: int | None = None, device: str = "cpu"
) -> Selection:
    """Members from one run: its snapshots (default), EMA/SWA model or a checkpoint."""
    ctx = open_run(run_dir, device)
    members = run_members(ctx, kind, last)
    refs: list[Member] = []
    if (ctx.run_dir / "checkpoints" / "last.pt").is_file():
        refs.append(checkpoint_member(ctx, "last", name="model (last checkpoint)"))
        for avg in ("ema", "swa"):
            m = averaged_member(ctx, avg)
            if m is not None and kind != avg:
                refs.append(m)
    return Selection(members, [ctx], f"run {ctx.run_dir}", refs)


def select_from_study(
    study: str, storage: str, k: int, checkpoint: str = "best", device: str = "cpu"
) -> Selection:
    """The k best trials of a study as members."""
    from ._topk import topk_members

    members, contexts = topk_members(storage, study, k, checkpoint=checkpoint, device=device)
    return Selection(members, contexts, f"study {study}")


def build_ensemble(
    selection: Selection, *, merge: Merge = "nms", log_probs: bool = False
) -> nn.Module:
    """The deployable ensemble module of a selection (probabilities, or merged boxes)."""
    return ensemble_for_task(
        [m.model for m in selection.members],
        selection.context.recipe.task,
        log_probs=log_probs,
        merge=merge,
    ).eval()


@torch.no_grad()
def evaluate(model: nn.Module, ctx: RunContext) -> dict[str, float]:
    """Validation metrics of ``model`` on the run's validation set (the task's own evaluation)."""
    comp = ctx.components
    model.eval()
    return dict(comp.task.evaluate(model, comp.val_loader, DistInfo(device=comp.dist.device)))


def comparison(selection: Selection, *, merge: Merge = "nms") -> list[Row]:
    """Each reference model, each member, and the ensemble, measured on the first run's validation set."""
    ctx = selection.context
    rows = [
        Row(m.name, _REFERENCE_KINDS.get(m.name, "model"), evaluate(m.model, ctx))
        for m in selection.references
    ]
    rows += [Row(m.name, "member", evaluate(m.model, ctx)) for m in selection.members]
    if len(selection.members) > 1:
        # Log-probabilities: the task's cross-entropy then measures the ensemble's NLL.
        ens = build_ensemble(selection, merge=merge, log_probs=True)
        rows.append(Row(f"ensemble of {len(selection.members)}", "ensemble", evaluate(ens, ctx)))
    return rows


def example_input(ctx: RunContext, n: int = 8) -> Any:
    """A few validation inputs, for export checks."""
    batch = next(iter(ctx.components.val_loader))
    x = batch[0]
    return x[:n] if isinstance(x, torch.Tensor) else list(x)[: max(1, min(n, 2))]


def export_metadata(selection: Selection, rows: list[Row] | None = None) -> dict[str, Any]:
    """The record stored inside an exported file: members, their metrics, preprocessing, classes."""
    ctx = selection.context
    comp = ctx.components
    x = example_input(ctx, 1)
    shape = list(x.shape[1:]) if isinstance(x, torch.Tensor) else None
    by_name = {r.name: r.metrics for r in rows or []}
    out: dict[str, Any] = {
        "task": ctx.recipe.task,
        "origin": selection.origin,
        "combine": "mean of softmax probabilities"
        if ctx.recipe.task == "classification"
        else "pooled boxes, merged",
        "members": [
            {"name": m.name, "source": m.source, "metrics": by_name.get(m.name, m.metrics)}
            for m in selection.members
        ],
        "num_classes": ctx.num_classes,
        "class_names": comp.bundle.class_names,
        "input": {"shape": shape, "dtype": "float32", "layout": "NCHW"},
        "preprocessing": describe_preprocessing(comp.bundle.val),
        "recipe": ctx.recipe.name,
    }
    ens = [r for r in rows or [] if r.kind == "ensemble"]
    if ens:
        out["ensemble_metrics"] = ens[0].metrics
    return out
