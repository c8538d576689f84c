"""Training detectors for real: the shapes recipes, a pretrained backbone, and 2-process DDP."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tunekit.cli import main
from tunekit.config import load_recipe
from tunekit.core import load_checkpoint
from tunekit.detection import DetectionTask, build_detection
from tunekit.engine import HookBase
from tunekit.run import build_components, train

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the shapes recipes generate their data (once for this module)."""
    return tmp_path_factory.mktemp("shapes_recipe") / "shapes"


def _recipe(name: str, root: Path, tmp_path: Path, *overrides: str):  # type: ignore[no-untyped-def]
    return load_recipe(
        REPO / "recipes" / name,
        [f"data.root={root}", f"output_dir={tmp_path / 'runs'}", *overrides],
    )


class _StopAtTarget(HookBase):
    """Ends training after the first evaluation that meets the target (the rest is not tested)."""

    def after_epoch(self) -> None:
        rec = self.trainer.history[-1]
        if rec.get("val/AP", 0.0) >= 0.45 and rec.get("val/AP50", 0.0) >= 0.80:
            self.trainer.request_stop("target reached")


@pytest.mark.slow
@pytest.mark.timeout(900)  # about a minute on 2 free cores; more on a shared machine
def test_shapes_fcos_from_scratch_reaches_the_target_ap(shapes_root: Path, tmp_path: Path) -> None:
    # The recipe as it is (8 epochs planned). Over seeds 0-2 it reaches the target after 5 or
    # 6 epochs and gets to AP 0.69-0.74 after 8 (benchmarks/shapes_fcos_curve.py): the target
    # holds with two epochs and a wide AP margin to spare.
    # Diagnostics are off: they are not what is tested here (the DDP test below runs them).
    # Evaluated every second epoch (and after the last): no seed is on target before epoch 5,
    # and seed 0 not before 6, so the evaluations of epochs 1, 3 and 5 (200 images, ~2 s each)
    # would only be read and passed over. Skipping them moves the run like another seed (the
    # evaluation loader draws from the global RNG): AP 0.585 / AP50 0.887 after 6 epochs, where
    # evaluating every epoch gives 0.639 / 0.880.
    recipe = _recipe(
        "shapes_fcos.yaml", shapes_root, tmp_path, "diagnostics.enabled=false", "train.eval_every=2"
    )
    summary = train(recipe, out=tmp_path / "run", progress=False, hooks=[_StopAtTarget()])
    final = summary["final"]
    print(
        f"shapes_fcos from scratch: AP {final['val/AP']:.3f} AP50 {final['val/AP50']:.3f} "
        f"after {summary['epochs_run']} epochs, {summary['wall_time_s']:.0f}s"
    )
    assert final["val/AP"] >= 0.45 and final["val/AP50"] >= 0.80
    assert final["val/images"] == 200
    # Each loss term of the detector is logged as an epoch mean, and they add up to the loss.
    terms = [k for k in final if k.startswith("train/") and k != "train/loss"]
    assert set(terms) == {"train/classification", "train/bbox_regression", "train/bbox_ctrness"}
    assert sum(final[k] for k in terms) == pytest.approx(final["train/loss"], rel=1e-6)
    results = json.loads((tmp_path / "run" / "coco_results.json").read_text())
    assert {r["image_id"] for r in results} <= set(range(1, 201)) and len(results) == final[
        "val/detections"
    ]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_pretrained_recipe_starts_from_the_classifier_recipes_backbone(
    shapes_root: Path, tmp_path: Path
) -> None:
    """The repo's classifier recipe learns the shapes, and the pretrained detector recipe trains
    from its backbone.

    Whether that backbone gives the detector a head start over random weights is a tendency
    (small on this CPU-sized twin, and it depends on the classifier run); it is measured over
    seeds in benchmarks/detection_pretraining.py, not asserted here.
    """
    # Two of the recipe's four epochs: top-1 0.975 (0.986 after four), far above 0.9.
    clf = _recipe(
        "shapes_classifier.yaml",
        shapes_root,
        tmp_path,
        f"data.kwargs.root={shapes_root}",
        "train.epochs=2",
        "diagnostics.enabled=false",
    )
    clf_summary = train(clf, out=tmp_path / "clf", progress=False)
    assert clf_summary["best"]["value"] > 0.9  # it learned the shapes
    ckpt = tmp_path / "clf" / "checkpoints" / "last.pt"
    pre_recipe = _recipe(
        "shapes_fcos_pretrained.yaml",
        shapes_root,
        tmp_path,
        f"model.weights={ckpt}",
        "train.epochs=1",
        "train.max_steps_per_epoch=4",
        "data.val_subset=16",
        "diagnostics.enabled=false",
    )
    # The backbone really starts from the classifier's weights...
    comp = build_components(pre_recipe)
    body = comp.model.backbone.body.state_dict()
    clf_state = load_checkpoint(ckpt)["model"]
    shared = [k for k in body if k in clf_state]
    assert "layer2.conv1.weight" in shared and len(shared) >= 20, shared
    for name in shared:
        assert torch.equal(body[name], clf_state[name]), name
    # ...and the recipe trains from there and is scored.
    pretrained = train(pre_recipe, out=tmp_path / "p", progress=False)
    assert pretrained["steps"] == 4 and pretrained["final"]["val/images"] == 16
    assert all(math.isfinite(v) for k, v in pretrained["final"].items() if k.startswith("train/"))


@pytest.mark.slow
def test_ddp_two_processes_evaluate_every_val_image_once(
    cli: Callable[..., object], tmp_path: Path, small_shapes: Path
) -> None:
    out = tmp_path / "ddp"
    args = [
        "train",
        "--recipe",
        str(REPO / "recipes" / "shapes_fcos.yaml"),
        "--nproc",
        "2",
        "--out",
        str(out),
        "--set",
        f"data.root={small_shapes}",
        "--set",
        "data.image_size=48",
        "--set",
        "data.kwargs={train: 40, val: 12, seed: 3}",
        "--set",
        "train.epochs=1",
        "--set",
        "train.batch_size=8",
        "--set",
        "data.val_subset=11",  # an odd count: the two shards differ in size
    ]
    proc = cli(*args, timeout=240)
    assert proc.returncode == 0, proc.stderr[-8000:]  # type: ignore[attr-defined]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    final = summary["final"]
    assert final["val/images"] == 11
    # The same weights evaluated in one process over the same 11 images give the same numbers:
    # nothing was counted twice or dropped when the ranks' predictions were gathered.
    recipe = load_recipe(
        REPO / "recipes" / "shapes_fcos.yaml",
        [
            f"data.root={small_shapes}",
            "data.image_size=48",
            "data.kwargs={train: 40, val: 12, seed: 3}",
            "data.val_subset=11",
        ],
    )
    _, model, task = build_detection(recipe)
    model.load_state_dict(load_checkpoint(out / "checkpoints" / "last.pt")["model"])
    model.eval()
    comp = build_components(recipe)
    single = task.evaluate(model, comp.val_loader, comp.dist)
    assert isinstance(task, DetectionTask)
    for key in ("val/AP", "val/AP50", "val/AR100", "val/detections"):
        assert single[key] == pytest.approx(final[key], abs=1e-9), key
    results = json.loads((out / "coco_results.json").read_text())
    assert len({r["image_id"] for r in results}) <= 11 and len(results) == final["val/detections"]


def test_missing_coco_root_is_one_line_naming_the_expected_path(
    cli: Callable[..., object], tmp_path: Path
) -> None:
    recipe = str(REPO / "recipes" / "coco_retinanet_scratch.yaml")
    proc = cli(
        "train",
        "--recipe",
        recipe,
        "--set",
        f"data.root={tmp_path / 'coco'}",
        "--out",
        str(tmp_path / "r"),
    )
    assert proc.returncode == 2  # type: ignore[attr-defined]
    err = proc.stderr.strip()  # type: ignore[attr-defined]
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{tmp_path / 'coco' / 'train2017'}' does not exist" in err and "--set data.root=" in err


def test_data_shapes_command_writes_a_dataset_and_rejects_bad_values(
    cli: Callable[..., object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = cli(
        "data",
        "shapes",
        "--out",
        str(tmp_path / "s"),
        "--train",
        "4",
        "--val",
        "2",
        "--size",
        "32",
        "--seed",
        "5",
    )
    assert proc.returncode == 0, proc.stderr  # type: ignore[attr-defined]
    data = json.loads((tmp_path / "s" / "annotations" / "instances_train.json").read_text())
    assert len(data["images"]) == 4 and data["images"][0]["width"] == 32
    # A bad value: one line naming the flag (in-process; the subprocess path is the same).
    assert main(["data", "shapes", "--out", str(tmp_path / "t"), "--size", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "field '--size'" in err and "16 pixels" in err
    assert not (tmp_path / "t").exists()
