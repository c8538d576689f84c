"""The committed replay tables read back complete, and a broken table fails in one clear line."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
# A build in progress keeps <name>.partial.json beside the tables; it is not one yet.
TABLES = sorted(p for p in (BENCH / "tables").glob("*.json") if ".partial." not in p.name)


sys.path.insert(0, str(BENCH))  # _tasks imports _replay, its sibling

from _replay import Table  # noqa: E402


def _tasks() -> ModuleType:
    # Loaded from its file: benchmarks/ is not a package on the test path.
    spec = importlib.util.spec_from_file_location("bench_tasks", BENCH / "_tasks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


tasks = _tasks()


@pytest.mark.parametrize("path", TABLES, ids=[p.stem for p in TABLES])
def test_committed_table_is_complete(path: Path) -> None:
    table = Table.load(path)
    spec = tasks.TASKS[table.task]
    assert table.space == {"lr": sorted(spec.lrs), "weight_decay": sorted(spec.weight_decays)}
    assert len(table.curves) == len(spec.lrs) * len(spec.weight_decays) * len(table.seeds)
    assert table.meta["chance"] == pytest.approx(1 / table.meta["classes"], abs=1e-5)


def _small_table() -> dict[str, Any]:
    runs = [
        {"config": {"lr": lr, "weight_decay": wd}, "seed": s, "curve": [0.5, 0.6, 0.7]}
        for lr in (0.01, 0.1)
        for wd in (1e-4, 1e-3)
        for s in (0, 1)
    ]
    return {
        "task": "digits",
        "metric": "val/top1",
        "direction": "maximize",
        "epochs": 3,
        "steps_per_epoch": 10,
        "val_size": 100,
        "classes": 10,
        "chance": 0.1,
        "space": {"lr": [0.01, 0.1], "weight_decay": [1e-4, 1e-3]},
        "seeds": [0, 1],
        "runs": runs,
        "machine": "test",
        "built": "2024-01-01T00:00:00+00:00",
        "command": "test",
    }


def test_small_table_loads(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(_small_table()))
    assert len(Table.load(path).curves) == 8


def _drop_run(t: dict[str, Any]) -> None:
    t["runs"].pop()


def _short_curve(t: dict[str, Any]) -> None:
    t["runs"][1]["curve"] = [0.5, 0.6]


def _nan(t: dict[str, Any]) -> None:
    t["runs"][0]["curve"][2] = math.nan


def _above_one(t: dict[str, Any]) -> None:
    t["runs"][0]["curve"][0] = 61.0


def _twice(t: dict[str, Any]) -> None:
    t["runs"][1] = copy.deepcopy(t["runs"][0])


def _off_grid(t: dict[str, Any]) -> None:
    t["runs"][0]["config"]["lr"] = 0.02


def _no_key(t: dict[str, Any]) -> None:
    del t["space"]


def _one_seed(t: dict[str, Any]) -> None:
    t["seeds"] = [0]


def _direction(t: dict[str, Any]) -> None:
    t["direction"] = "up"


def _no_lr(t: dict[str, Any]) -> None:
    del t["runs"][0]["config"]["lr"]


@pytest.mark.parametrize(
    ("break_it", "words"),
    [
        (_drop_run, "1 grid run(s) missing, e.g. lr=0.1 weight_decay=0.001 seed=1"),
        (_short_curve, "has 2 curve values; expected 3"),
        (_nan, "has value nan; expected finite values in [0, 1]"),
        (_above_one, "has value 61.0"),
        (_twice, "appears twice"),
        (_off_grid, "is not a grid point and seed"),
        (_no_key, "missing top-level key(s) space"),
        (_one_seed, "seeds: at least 2"),
        (_direction, "direction 'up'"),
        (_no_lr, "runs[0] lacks"),
    ],
)
def test_broken_table_raises_one_line(tmp_path: Path, break_it: Any, words: str) -> None:
    table = _small_table()
    break_it(table)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(table))
    with pytest.raises(ValueError) as info:
        Table.load(path)
    message = str(info.value)
    assert words in message
    assert "\n" not in message and str(path) in message


def test_cosine_has_no_warmup_and_ends_at_zero() -> None:
    assert tasks.cosine_lr(0.1, 0, 90) == 0.1
    assert tasks.cosine_lr(0.1, 45, 90) == pytest.approx(0.05)
    assert tasks.cosine_lr(0.1, 90, 90) == pytest.approx(0.0)
