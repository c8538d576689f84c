"""Mistakes that only the builders can see (kwargs, generated-set sizes, memory) are one line too,
name the recipe file, and leave no run directory behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunekit.cli import main

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
DIGITS = str(RECIPES / "digits.yaml")
SHAPES = str(RECIPES / "shapes_fcos.yaml")

CASES = [
    # (id, recipe, --set values, substrings of the one line)
    (
        "small-cnn-kwarg",
        DIGITS,
        ["model.kwargs.nope=1"],
        ["digits.yaml", "field 'model.kwargs'", "'nope'", "it takes: num_classes"],
    ),
    (
        "torchvision-kwarg",
        DIGITS,
        ["model.name=resnet18", "model.kwargs.zzz=1"],
        ["field 'model.kwargs'", "resnet18 does not accept", "'zzz'"],
    ),
    (
        "builder-kwarg",
        DIGITS,
        ["data.builder=tunekit.testing:random_classification", "data.kwargs.bogus=2"],
        ["field 'data.kwargs'", "'bogus'", "it takes:"],
    ),
    (
        "unknown-schedule-names-file",
        DIGITS,
        ["schedule.name=cosin"],
        ["digits.yaml", "field 'schedule.name'", "did you mean 'cosine'"],
    ),
    (
        "batch-over-train-set-names-file",
        DIGITS,
        ["train.batch_size=100000"],
        ["digits.yaml", "field 'train.batch_size'", "larger than the training set"],
    ),
    (
        "batch-times-image-memory",
        DIGITS,
        ["train.batch_size=100000", "data.image_size=2048"],
        ["field 'train.batch_size'", "TiB for the input batch alone", "at most 64 GiB"],
    ),
    (
        "shapes-count",
        SHAPES,
        ["data.kwargs.train=1000000000"],
        ["field 'data.kwargs.train'", "at most 1000000 images", "GiB of PNG files"],
    ),
    (
        "shapes-side",
        SHAPES,
        ["data.kwargs.size=100000"],
        ["field 'data.kwargs.size'", "at most 2048 pixels", "MiB for one decoded image"],
    ),
    ("shapes-type", SHAPES, ["data.kwargs.train=abc"], ["expected a whole number, got 'abc'"]),
    ("shapes-seed", SHAPES, ["data.kwargs.seed=-1"], ["field 'data.kwargs.seed'", "2**32 - 1"]),
]


@pytest.mark.parametrize(
    ("recipe", "sets", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_builder_mistakes_are_one_line(tmp_path, capsys, recipe, sets, needles):
    out = tmp_path / "run"
    argv = ["train", "--recipe", recipe, "--out", str(out), "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    argv += ["--set", "data.root=" + str(tmp_path / "data")]
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    assert not out.exists()
