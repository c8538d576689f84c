"""examples/watch_plain_loop.py runs and leaves a directory the report reads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tunekit.report import diagnose, load_run

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "watch_plain_loop.py"


def test_the_example_trains_and_its_directory_reads_as_a_run(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("watch_plain_loop", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    record = module.main(str(tmp_path / "run"), epochs=2)
    assert record["val/top1"] > 0.8  # a 10-class problem: chance is 0.1
    run = load_run(tmp_path / "run")
    assert len(run.epochs) == 2 and len(run.steps) == 2 * 24
    assert any("update_ratio/0" in r for r in run.steps)
    assert isinstance(diagnose(tmp_path / "run"), list)
