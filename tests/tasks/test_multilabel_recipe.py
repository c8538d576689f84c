"""The multi-label recipe path: the shipped pretraining recipe, its checkpoint as a starting
point for the classifier and the detector, and mistakes reported in one line (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from tunekit.cli import main
from tunekit.config import ModelConfig, Recipe, load_recipe
from tunekit.run import check_metric, train

REPO = Path(__file__).resolve().parents[2]
PRETRAIN = REPO / "recipes" / "shapes_tags_pretrain.yaml"


def test_the_shipped_pretraining_recipe_is_a_multilabel_softmax_recipe() -> None:
    recipe = load_recipe(str(PRETRAIN))
    assert recipe.task == "multilabel" and recipe.multilabel.loss == "softmax"
    assert recipe.data.name == "shapes_tags" and recipe.train.metric == "val/mAP"
    check_metric(recipe)  # val/mAP is a key the multilabel evaluation gives


def test_its_checkpoint_starts_the_classifier_and_the_detector_without_the_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNEKIT_CACHE", str(tmp_path / "cache"))
    data = yaml.safe_load(PRETRAIN.read_text())
    data["data"]["image_size"] = 32
    data["data"]["kwargs"].update(train=48, val=16, pool_factor=2)
    data["train"].update(epochs=1, batch_size=16, device="cpu")
    data["diagnostics"] = {"enabled": False}
    data["output_dir"] = str(tmp_path)
    summary = train(Recipe.model_validate(data), out=tmp_path / "tags", progress=False)
    assert summary["final"]["val/mAP"] > 0
    ckpt = summary["checkpoints"]["last"]
    tags_state = torch.load(ckpt, weights_only=False)["model"]
    assert tags_state["fc.weight"].shape[0] == 27  # one logit per (colour, shape) tag

    from tunekit.models import build_model

    classifier = build_model(
        ModelConfig(
            builder="tunekit.detection:tiny_resnet",
            kwargs={"width": 16, "norm": "gn"},
            weights=ckpt,
        ),
        3,
    )
    own = classifier.state_dict()
    assert torch.equal(own["layer3.conv2.weight"], tags_state["layer3.conv2.weight"])
    assert torch.equal(own["conv1.weight"], tags_state["conv1.weight"])
    assert own["fc.weight"].shape[0] == 3  # a new head for the 3 shape classes
    # With vocabulary: shape the tag head has the classifier's shape: still not loaded.
    three = {**tags_state, "fc.weight": torch.full((3, 64), 7.0), "fc.bias": torch.full((3,), 7.0)}
    torch.save(three, tmp_path / "three_tags.pt")
    fresh = build_model(
        ModelConfig(
            builder="tunekit.detection:tiny_resnet",
            kwargs={"width": 16, "norm": "gn"},
            weights=str(tmp_path / "three_tags.pt"),
        ),
        3,
    )
    assert not bool((fresh.state_dict()["fc.weight"] == 7.0).any())
    assert torch.equal(fresh.state_dict()["layer1.conv1.weight"], tags_state["layer1.conv1.weight"])

    from tunekit.detection import build_detector

    detector = build_detector(
        ModelConfig(name="fcos_tiny_fpn", width=16, norm="gn", weights=ckpt),
        3,
        image_size=64,
        max_size=107,
    )
    body = detector.state_dict()
    assert torch.equal(body["backbone.body.layer2.conv1.weight"], tags_state["layer2.conv1.weight"])


def _recipe(tmp_path: Path, **sections: object) -> str:
    data = {
        "task": "multilabel",
        "output_dir": str(tmp_path / "runs"),
        "data": {"builder": "tasks_helpers:tiny_tags"},
        "model": {"builder": "tasks_helpers:tiny_net"},
        "optim": {"name": "adamw", "lr": 0.01},
        "train": {"epochs": 1, "batch_size": 16, "metric": "val/mAP", "device": "cpu"},
        "diagnostics": {"enabled": False},
        **sections,
    }
    path = tmp_path / "ml.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _fails_in_one_line(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_tags_out_of_range_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _recipe(
        tmp_path, data={"builder": "tasks_helpers:tags_as_indices", "kwargs": {"bad": 9}}
    )
    err = _fails_in_one_line(capsys, ["train", "--recipe", path, "--out", str(tmp_path / "r")])
    assert "item 2 of the training set has the tag index 9, outside 0..3" in err
    assert err.startswith(f"tunekit: error: {path}: field 'data'")


def test_an_unknown_loss_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _recipe(tmp_path, multilabel={"loss": "focal"})
    err = _fails_in_one_line(capsys, ["train", "--recipe", path])
    assert "multilabel.loss" in err and "'bce' or 'softmax'" in err


def test_an_unknown_tta_view_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _recipe(tmp_path)
    err = _fails_in_one_line(capsys, ["train", "--recipe", path, "--set", "eval.tta=[hflip,vflip]"])
    assert "eval.tta" in err and "'hflip' or 'multicrop'" in err and "vflip" in err


def test_a_multilabel_run_with_tta_reports_both(tmp_path: Path) -> None:
    path = _recipe(
        tmp_path, eval={"tta": ["hflip"]}, multilabel={"loss": "bce", "precision_at": [1, 3]}
    )
    summary = train(load_recipe(path), out=tmp_path / "run", progress=False)
    for key in ("val/mAP", "val/prec@1", "val/prec@3", "tta/val/mAP", "tta/val/prec@3"):
        assert key in summary["final"], key
