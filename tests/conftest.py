"""Shared fixtures: small recipes and a CLI runner that runs tunekit in a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]

# Two cores: one intra-op thread per process keeps parallel tests and DDP workers from fighting.
torch.set_num_threads(1)


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m tunekit ARGS`` and returns the finished process (stdout, stderr, returncode)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tunekit", *args],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli


@pytest.fixture
def write_recipe(tmp_path: Path) -> Callable[..., Path]:
    """Writes a recipe YAML (the digits recipe by default) with nested overrides merged in."""

    def _write(
        name: str = "recipe.yaml", base: str | None = "digits.yaml", **sections: object
    ) -> Path:
        data: dict = yaml.safe_load((REPO / "recipes" / base).read_text()) if base else {}
        data["output_dir"] = str(tmp_path / "runs")
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data))
        return path

    return _write
