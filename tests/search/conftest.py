"""Tiny studies for the search tests: digits trials of a fraction of a second."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

#: Recipe overrides that make a digits trial cost ~0.1 s an epoch on one core.
TINY = [
    "model.width=8",
    "train.device=cpu",
    "data.train_subset=256",
    "data.val_subset=120",
    "train.max_steps_per_epoch=4",
    "train.batch_size=32",
    "diagnostics.histograms=false",
    "diagnostics.tensorboard=false",
    "data.augment.random_crop_padding=0",
]


def study_dict(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "tiny",
        "recipe": str(REPO / "recipes" / "digits.yaml"),
        "set": list(TINY),
        "metric": "val/top1",
        "direction": "maximize",
        "space": {
            "optim.lr": {"type": "log_uniform", "low": 0.01, "high": 0.5},
            "optim.weight_decay": {"type": "log_uniform", "low": 1e-5, "high": 1e-2},
        },
        "stages": [
            {"name": "coarse", "sampler": "random", "trials": 4, "epochs": 1},
            {"name": "fine", "sampler": "tpe", "trials": 2, "epochs": 2, "refine": {"top_k": 2}},
        ],
        "liveness": {"heartbeat_s": 0.5, "grace_s": 3, "max_retry": 2},
    }
    data.update(fields)
    return data


@pytest.fixture
def write_study(tmp_path: Path) -> Callable[..., Path]:
    """Writes a tiny study YAML (fields override the defaults) and returns its path."""

    def _write(filename: str = "tiny.yaml", **fields: Any) -> Path:
        path = tmp_path / filename
        path.write_text(yaml.safe_dump(study_dict(**fields)))
        return path

    return _write


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """One throwaway PostgreSQL server for every test that needs one."""
    from tunekit.testing import PostgresServer

    with PostgresServer() as pg:
        yield pg
