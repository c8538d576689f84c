"""A run's summary.json is user-editable: a malformed one never stops an export."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunekit import load_recipe, train
from tunekit.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text", ["42", '{"checkpoints": 5}', '{"checkpoints": {"best": 7}}', "{"])
def test_export_reads_the_checkpoint_whatever_summary_json_holds(tmp_path, capsys, text):
    recipe = load_recipe(
        REPO / "recipes" / "digits.yaml",
        [
            "data.image_size=8",
            "data.train_subset=64",
            "data.val_subset=32",
            "model.width=4",
            "train.batch_size=32",
            "train.epochs=1",
            "diagnostics.enabled=false",
        ],
    )
    run = tmp_path / "run"
    train(recipe, out=run, progress=False)
    (run / "summary.json").write_text(text)
    out = tmp_path / "best.pt"
    rc = main(["ensemble", "export", "--run", str(run), "--members", "best", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert out.is_file()
