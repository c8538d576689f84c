"""Reading a run directory's record stream (``metrics.jsonl``) into plain lists."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunekit.errors import TunekitError


@dataclass
class RunRecords:
    """A run's records by kind, each list sorted by step.

    ``metric``/``mode`` come from the run's ``recipe.yaml`` (the metric that
    picks the best checkpoint), with the recipe defaults when it is missing.
    """

    run_dir: Path
    name: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    metric: str = "val/top1"
    mode: str = "max"
    skipped_lines: int = 0


def load_run(run_dir: str | os.PathLike[str]) -> RunRecords:
    """Reads ``RUN_DIR/metrics.jsonl`` (and ``recipe.yaml`` when present).

    Lines that are not JSON objects (a line cut by a kill) are skipped and
    counted in ``skipped_lines``. A step or epoch written twice keeps its last
    record.

    Raises:
        TunekitError: the directory or its metrics.jsonl does not exist.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise TunekitError("no such run directory", file=str(root))
    path = root / "metrics.jsonl"
    if not path.is_file():
        raise TunekitError(
            "no metrics.jsonl in this directory; give a run directory (the --out of 'tunekit train')",
            file=str(root),
        )
    run = RunRecords(run_dir=root, name=root.name)
    steps: dict[int, dict[str, Any]] = {}
    epochs: dict[float, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            run.skipped_lines += 1
            continue
        if not isinstance(rec, dict) or "step" not in rec:
            run.skipped_lines += 1
            continue
        kind = rec.get("kind", "epoch")
        if kind == "step":
            steps[int(rec["step"])] = {**steps.get(int(rec["step"]), {}), **rec}
        elif kind == "event":
            run.events.append(rec)
        else:
            epochs[float(rec.get("epoch", 0))] = rec
    run.steps = [steps[k] for k in sorted(steps)]
    run.epochs = [epochs[k] for k in sorted(epochs)]
    run.events.sort(key=lambda r: r.get("step", 0))
    _read_recipe(run)
    return run


def _read_recipe(run: RunRecords) -> None:
    path = run.run_dir / "recipe.yaml"
    try:
        data = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        data = None  # a report of the numbers is still possible without it
    if not isinstance(data, dict):
        return
    run.name = str(data.get("name", run.name))
    train = data.get("train") or {}
    if isinstance(train, dict):
        run.metric = str(train.get("metric", run.metric))
        run.mode = str(train.get("mode", run.mode))
