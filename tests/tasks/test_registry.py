"""The task registry: one spec per ``recipe.task``, detection loaded only when asked for."""

from __future__ import annotations

import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from tunekit.config import Recipe, load_recipe
from tunekit.errors import ConfigError
from tunekit.tasks import TASKS, TaskSpec, get_task

REPO = Path(__file__).resolve().parents[2]


def test_every_task_a_recipe_accepts_has_a_spec_named_after_it() -> None:
    names = typing.get_args(Recipe.model_fields["task"].annotation)
    assert sorted(names) == sorted(TASKS)
    for name in names:
        spec = get_task(name)
        assert isinstance(spec, TaskSpec) and spec.name == name


def test_an_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown task 'detecton'.*choose one of: classification, detection, multilabel",
    ):
        get_task("detecton")


def test_metric_names_come_from_the_recipe_without_building_anything() -> None:
    digits = load_recipe(REPO / "recipes" / "digits.yaml")
    assert get_task("classification").metric_names(digits) == ("val/loss", "val/top1", "val/top5")
    tags = load_recipe(REPO / "recipes" / "shapes_tags_pretrain.yaml")
    assert get_task("multilabel").metric_names(tags)[:2] == ("val/loss", "val/mAP")
    fcos = load_recipe(REPO / "recipes" / "shapes_fcos.yaml")
    assert "val/AP" in get_task("detection").metric_names(fcos)


def test_what_each_task_refuses_and_watches() -> None:
    assert get_task("multilabel").no_snapshots and get_task("multilabel").no_ensembles
    assert get_task("classification").no_snapshots is None
    assert get_task("detection").no_ensembles is None


def test_importing_the_tasks_leaves_detection_unloaded() -> None:
    code = (
        "import json, sys, tunekit.tasks; "
        "print(json.dumps([m for m in sys.modules if m.startswith('tunekit.detection.')]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
