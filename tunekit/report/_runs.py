"""Reading a run directory's record stream (``metrics.jsonl``) into plain lists."""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunekit.errors import TunekitError

log = logging.getLogger("tunekit.report")


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

    The record stream is input a person may have edited: a record that cannot be
    read (see :func:`read_records`) is skipped, counted in ``skipped_lines``, and
    said once in a warning on the ``tunekit.report`` logger. A step or epoch
    written twice keeps its last record.

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
    records, skipped = read_records(path)
    for rec in records:
        kind = rec["kind"]
        if kind == "step":
            steps[rec["step"]] = {**steps.get(rec["step"], {}), **rec}
        elif kind == "event":
            run.events.append(rec)
        else:
            epochs[rec["epoch"]] = rec
    run.steps = [steps[k] for k in sorted(steps)]
    run.epochs = [epochs[k] for k in sorted(epochs)]
    run.events.sort(key=lambda r: r["step"])
    run.skipped_lines = skipped.count
    if skipped.count:
        log.warning("%s: %s", path, skipped.describe())
    _read_recipe(run)
    return run


@dataclass
class Skipped:
    """Records that could not be read: how many, why, and the first one's line number."""

    count: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    first_line: int | None = None

    def add(self, line: int, reason: str) -> None:
        self.count += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if self.first_line is None:
            self.first_line = line

    def describe(self) -> str:
        """``3 bad records skipped (2 not JSON, 1 with step null), the first at line 7``."""
        why = ", ".join(f"{n} {reason}" for reason, n in self.reasons.items())
        noun = "record" if self.count == 1 else "records"
        return f"{self.count} bad {noun} skipped ({why}), the first at line {self.first_line}"


_KINDS = ("step", "epoch", "event")
# Keys every record may carry that are not metric values.
_META = ("kind", "step", "epoch")


def read_records(path: Path) -> tuple[list[dict[str, Any]], Skipped]:
    """The readable records of a ``metrics.jsonl``, and what was skipped.

    A record is a JSON object with a ``kind`` (``step``, ``epoch`` or ``event``;
    ``epoch`` when absent), a ``step`` that is a whole number >= 0 and, for an
    epoch record, an ``epoch`` >= 0. In step and epoch records every other value
    is a number; NaN and infinities are kept, since a diverging run writes them
    and reports show them. Anything else (a line cut by a kill, an edit gone
    wrong) is skipped: no reader of the stream has to check a type again.
    Returned records have ``kind`` set, ``step`` an int, ``epoch`` a float when
    present, and float metric values.
    """
    records: list[dict[str, Any]] = []
    skipped = Skipped()
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            rec, reason = _parse(raw)
            if reason is not None:
                skipped.add(number, reason)
            elif rec is not None:
                records.append(rec)
    return records, skipped


def _number(v: Any) -> float | None:
    """``v`` as a float when it is a JSON number (a bool is not; an int too big for a float is not)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        return float(v)
    except OverflowError:
        return None


def _describe(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (str, bool, type(None))) else type(v).__name__
    return text if len(text) <= 20 else text[:17] + "..."


def _parse(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """One line: (record, None), (None, None) for a blank line, or (None, why it was skipped)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not UTF-8"
    if not line.strip():
        return None, None
    try:
        rec = json.loads(line)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError; deep nesting recurses
        return None, "not JSON"
    if not isinstance(rec, dict):
        return None, "not a JSON object"
    kind = rec.get("kind", "epoch")
    if kind not in _KINDS:
        return None, f"with kind {_describe(kind)}"
    if "step" not in rec:
        return None, "without a step"
    step = _number(rec["step"])
    if step is None or not math.isfinite(step) or step < 0 or not step.is_integer():
        return None, f"with step {_describe(rec['step'])}"
    out: dict[str, Any] = {**rec, "kind": kind, "step": int(step)}
    if "epoch" in rec or kind == "epoch":
        epoch = _number(rec.get("epoch"))
        if epoch is None or not math.isfinite(epoch) or epoch < 0:
            return None, f"with epoch {_describe(rec.get('epoch'))}"
        out["epoch"] = epoch
    if kind == "event":
        return out, None  # an event's other fields are text: message, level, layer
    for key, value in rec.items():
        if key in _META:
            continue
        number = _number(value)
        if number is None:
            return None, f"with a non-numeric {key!r}"
        out[key] = number
    return out, None


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
