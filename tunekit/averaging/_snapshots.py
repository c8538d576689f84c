"""Snapshot ensembles (Huang et al.): one model per SGDR cycle, for the price of one run.

With the cyclic cosine schedule the LR falls to its floor at the end of every
cycle and the weights settle in a minimum; a snapshot is taken right there,
before the restart throws them out again. The last M snapshots are evaluated
alone and averaged together.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunekit.config import Recipe
from tunekit.core import barrier, load_checkpoint, save_atomic
from tunekit.engine import HookBase, sgdr_cycle
from tunekit.errors import CheckpointError, ConfigError

from ._bn import bare_copy
from ._ensemble import ensemble_for_task

SNAPSHOT_FORMAT = "tunekit-snapshot-v1"
INDEX = "index.json"


def cycle_ended(
    step: int, steps_per_epoch: int, cycle_epochs: float, cycle_mult: float
) -> int | None:
    """The SGDR cycle that ends with optimizer step ``step``, or None.

    A cycle ends at step s when step s - 1 lies in it and step s does not.
    """
    if step <= 0:
        return None
    before = sgdr_cycle((step - 1) / steps_per_epoch, cycle_epochs, cycle_mult)[0]
    now = sgdr_cycle(step / steps_per_epoch, cycle_epochs, cycle_mult)[0]
    return before if now > before else None


def load_snapshot(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A snapshot file (weights and where they came from), or a one-line error."""
    obj = load_checkpoint(path, require_format=False)
    if not (isinstance(obj, dict) and obj.get("format") == SNAPSHOT_FORMAT):
        raise CheckpointError(
            f"not a tunekit snapshot (expected format={SNAPSHOT_FORMAT!r})", file=str(path)
        )
    return obj


class SnapshotHook(HookBase):
    """Saves ``snapshots/cycle_NNN.pt`` at the end of every SGDR cycle and evaluates the ensemble.

    After an evaluation that follows a new snapshot, the epoch record gets
    ``snapshot/val/...`` (the newest snapshot alone) and ``snapshots/val/...``
    (the average of the last ``ensemble_last`` snapshots' probabilities), and
    ``snapshots/index.json`` lists every snapshot with its metrics.
    """

    priority = 65  # after the evaluation, before the metrics writer (80) and checkpoints (90)

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        cycle_epochs: float,
        cycle_mult: float = 1.0,
        ensemble_last: int = 3,
        keep: int | None = None,
        kind: str = "classification",
    ) -> None:
        self.directory = Path(directory)
        self.cycle_epochs, self.cycle_mult = cycle_epochs, cycle_mult
        self.ensemble_last, self.keep = ensemble_last, keep
        self.kind = kind
        self.records: list[dict[str, Any]] = []
        self._states: dict[int, dict[str, torch.Tensor]] = {}
        self._pending = False

    @classmethod
    def from_recipe(cls, recipe: Recipe, run_dir: Path, *, file: str | None = None) -> SnapshotHook:
        cfg = recipe.averaging.snapshots
        assert cfg is not None
        if recipe.schedule.name != "sgdr":
            raise ConfigError(
                f"snapshot ensembles take a snapshot at the end of every SGDR cycle, but schedule.name is "
                f"{recipe.schedule.name!r}; set schedule.name: sgdr (with schedule.cycle_epochs) or remove "
                "averaging.snapshots",
                file=file,
                field="averaging.snapshots",
            )
        return cls(
            run_dir / "snapshots",
            cycle_epochs=recipe.schedule.cycle_epochs,
            cycle_mult=recipe.schedule.cycle_mult,
            ensemble_last=cfg.ensemble_last,
            keep=cfg.keep,
            kind=recipe.task,
        )

    # -- taking snapshots -------------------------------------------------

    def after_step(self) -> None:
        t = self.trainer
        cycle = cycle_ended(t.step, t.steps_per_epoch, self.cycle_epochs, self.cycle_mult)
        if cycle is None:
            return
        state = {k: v.detach().to("cpu", copy=True) for k, v in t.module.state_dict().items()}
        name = f"cycle_{cycle:03d}.pt"
        record: dict[str, Any] = {
            "cycle": cycle,
            "epoch": t.step / t.steps_per_epoch,
            "step": t.step,
            "file": name,
            "metrics": {},
        }
        if t.dist.is_main:
            save_atomic(
                {
                    "format": SNAPSHOT_FORMAT,
                    **{k: v for k, v in record.items() if k != "metrics"},
                    "model": state,
                },
                self.directory / name,
            )
        self.records = [r for r in self.records if r["cycle"] != cycle] + [record]
        self._states[cycle] = state
        self._prune()
        self._pending = True

    def _prune(self) -> None:
        recent = {r["cycle"] for r in self.records[-self.ensemble_last :]}
        for cycle in list(self._states):
            if cycle not in recent:
                del self._states[cycle]  # only the ensemble's members stay in memory
        if self.keep is None or len(self.records) <= self.keep:
            return
        old, self.records = self.records[: -self.keep], self.records[-self.keep :]
        if self.trainer.dist.is_main:
            for r in old:
                (self.directory / r["file"]).unlink(missing_ok=True)

    # -- evaluating them --------------------------------------------------

    def _member(self, record: dict[str, Any]) -> nn.Module:
        cycle = record["cycle"]
        if cycle not in self._states:  # after a resume: read back what rank 0 wrote
            self._states[cycle] = load_snapshot(self.directory / record["file"])["model"]
        model = bare_copy(self.trainer.module)
        model.load_state_dict(self._states[cycle])
        return model.eval()

    def after_epoch(self) -> None:
        t = self.trainer
        if not self._pending or not self.metrics.evaluated:
            return
        self._pending = False
        if t.dist.distributed:
            barrier()  # the files of a resumed run are complete on every rank
        members = [self._member(r) for r in self.records[-self.ensemble_last :]]
        newest = self.records[-1]
        if not newest["metrics"]:
            newest["metrics"] = t.evaluate(members[-1])
        self.metrics.put_eval(newest["metrics"], model="snapshot")
        if len(members) > 1:
            ensemble = ensemble_for_task(members, self.kind)
            metrics = t.evaluate(ensemble)
            self.metrics.put_eval(metrics, model="snapshots")
            self.metrics.put_epoch("snapshots/members", float(len(members)))
        self._write_index()

    def _write_index(self) -> None:
        if not self.trainer.dist.is_main:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{INDEX}.tmp"
        tmp.write_text(
            json.dumps({"snapshots": self.records, "ensemble_last": self.ensemble_last}, indent=2)
        )
        tmp.replace(self.directory / INDEX)

    def after_train(self) -> None:
        if self.records:
            self._write_index()

    def state_dict(self) -> dict[str, Any]:
        return {"records": [dict(r) for r in self.records], "pending": self._pending}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.records = [dict(r) for r in state.get("records", [])]
        self._pending = bool(state.get("pending", False))
        self._states.clear()
