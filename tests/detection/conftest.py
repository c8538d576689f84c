"""A small shapes dataset generated once per test session, and helpers to corrupt copies of it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tunekit.shapes import ShapesSpec, generate_shapes

SMALL = ShapesSpec(train=40, val=12, size=48, seed=3)


@pytest.fixture(scope="session")
def small_shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40 + 12 image shapes dataset (read-only: tests copy it before changing it)."""
    return generate_shapes(tmp_path_factory.mktemp("shapes") / "small", SMALL)


@pytest.fixture
def corrupt(
    small_shapes: Path, tmp_path: Path
) -> Callable[[Callable[[dict[str, Any]], None]], Path]:
    """A copy of the small dataset whose val annotations were changed by ``edit(data)``; returns the JSON path."""

    def _make(edit: Callable[[dict[str, Any]], None]) -> Path:
        root = tmp_path / "copy"
        shutil.copytree(small_shapes, root)
        ann = root / "annotations" / "instances_val.json"
        data = json.loads(ann.read_text())
        edit(data)
        ann.write_text(json.dumps(data))
        return ann

    return _make
