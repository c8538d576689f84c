"""Test-time augmentation: the views, the average of their probabilities, and its metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from tunekit.config import Recipe
from tunekit.errors import ConfigError
from tunekit.run import build_components, check_metric, train
from tunekit.tasks import ClassificationTask, TTAModel, tta_views

REPO = Path(__file__).resolve().parents[2]


class Halves(nn.Module):
    """Logits from the left and right halves of the image: a flip swaps them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1] // 2
        left, right = x[..., :w].sum((1, 2, 3)), x[..., w:].sum((1, 2, 3))
        return torch.stack([left, 2 * right, left - right], dim=1)


def test_views_are_the_image_its_five_crops_and_their_mirrors() -> None:
    x = torch.zeros(1, 1, 8, 8)
    x[..., :4, :4] = 1.0  # the top-left quadrant lit
    assert len(tta_views(x, [])) == 1
    assert len(tta_views(x, ["hflip"])) == 2
    assert len(tta_views(x, ["multicrop"])) == 6
    views = tta_views(x, ["hflip", "multicrop"], crop_fraction=0.5)
    assert len(views) == 12 and all(v.shape == x.shape for v in views)
    assert torch.equal(views[0], x)
    top_left, top_right, bottom_left, bottom_right, centre = views[1:6]
    assert bool((top_left == 1).all()) and bool((bottom_right == 0).all())
    assert bool((top_right == 0).all()) and bool((bottom_left == 0).all())
    assert 0 < float(centre.mean()) < 1  # the centre crop straddles the lit quadrant's corner
    assert torch.equal(views[6], x.flip(-1))
    with pytest.raises(ValueError, match="unknown view 'vflip'"):
        tta_views(x, ["vflip"])


@pytest.mark.parametrize("probability", ["softmax", "sigmoid"])
def test_tta_output_is_the_average_of_the_views_probabilities(probability: str) -> None:
    torch.manual_seed(0)
    x = torch.rand(5, 1, 6, 6)
    model = Halves()
    act = (lambda z: z.softmax(1)) if probability == "softmax" else torch.sigmoid
    by_hand = (act(model(x)) + act(model(x.flip(-1)))) / 2
    out = TTAModel(model, ["hflip"], probability=probability)(x)
    assert torch.allclose(act(out), by_hand, atol=1e-6)
    # The views really differ here, so the average is not any single view's output.
    assert not torch.allclose(by_hand, act(model(x)), atol=1e-3)


def _digits_recipe(tmp_path: Path, **train: object) -> Recipe:
    data = yaml.safe_load((REPO / "recipes" / "digits.yaml").read_text())
    data["output_dir"] = str(tmp_path)
    data["train"].update({"epochs": 1, "max_steps_per_epoch": 4, "device": "cpu", **train})
    data["data"]["val_subset"] = 96
    data["diagnostics"] = {"enabled": False}
    data["eval"] = {"tta": ["hflip", "multicrop"]}
    return Recipe.model_validate(data)


def test_tta_metrics_are_reported_under_their_prefix_and_can_pick_the_best(tmp_path: Path) -> None:
    recipe = _digits_recipe(tmp_path, metric="val_tta/top1")
    summary = train(recipe, out=tmp_path / "run", progress=False)
    final = summary["final"]
    for key in ("tta/val/loss", "tta/val/top1", "tta/val/top5"):
        assert key in final
    assert summary["best"]["value"] == pytest.approx(final["tta/val/top1"])
    # The same numbers as scoring the averaged probabilities by hand, from the final weights.
    comp = build_components(recipe)
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    comp.model.load_state_dict(state["model"])
    comp.model.eval()
    tta = TTAModel(comp.model, ["hflip", "multicrop"], probability="softmax")
    direct = ClassificationTask(10).evaluate(tta, comp.val_loader, comp.dist)
    assert direct["val/top1"] == pytest.approx(final["tta/val/top1"])
    assert direct["val/loss"] == pytest.approx(final["tta/val/loss"], rel=1e-5)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert any("tta/val/top1" in r for r in records)


def test_a_tta_metric_without_eval_tta_is_refused_with_a_hint(tmp_path: Path) -> None:
    recipe = _digits_recipe(tmp_path, metric="val_tta/top1").model_copy(
        update={"eval": Recipe().eval}
    )
    with pytest.raises(ConfigError, match=r"no eval\.tta"):
        check_metric(recipe)
