"""Averaging that assumes softmax classes is refused for multilabel models, in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

from tunekit.cli import main

REPO = Path(__file__).resolve().parents[2]
PRETRAIN = REPO / "recipes" / "shapes_tags_pretrain.yaml"


def test_snapshot_ensembles_of_a_multilabel_recipe_are_refused(tmp_path, capsys):
    argv = ["train", "--recipe", str(PRETRAIN), "--out", str(tmp_path / "run"), "--no-progress"]
    argv += ["--set", "schedule.name=sgdr", "--set", "averaging.snapshots.ensemble_last=2"]
    argv += ["--set", f"data.root={tmp_path / 'data'}", "--set", "data.kwargs.train=64"]
    argv += ["--set", "data.kwargs.val=32"]
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "field 'averaging.snapshots'" in err and "averaging.ema" in err
    assert not (tmp_path / "run").exists()


def test_exporting_a_multilabel_run_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(PRETRAIN, run / "recipe.yaml")
    rc = main(
        [
            "ensemble",
            "export",
            "--run",
            str(run),
            "--members",
            "best",
            "--out",
            str(tmp_path / "m.pt"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "multilabel runs are not supported" in err and "field '--run'" in err
