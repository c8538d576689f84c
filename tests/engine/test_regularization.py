"""Loss-side regularisation and early stopping, each through a recipe, each able to fail.

Every test here builds its task or trainer the way a run does (``build_components``,
``train``), so a setting that stopped reaching the loss or the loop would fail it: mixed
inputs and soft targets for mixup and CutMix, a positive loss on a perfectly confident
correct prediction for label smoothing, a run that ends at the expected epoch for early
stopping.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tunekit.config import Recipe
from tunekit.run import build_components, train

NUM_CLASSES = 10


def _recipe(tmp_path: Any = None, **sections: Any) -> Recipe:
    data: dict[str, Any] = {
        "name": "reg",
        "data": {"name": "digits", "image_size": 8, "train_subset": 64, "val_subset": 32},
        "model": {"name": "small_cnn", "width": 4},
        "train": {"epochs": 1, "batch_size": 32, "device": "cpu"},
        "diagnostics": {"enabled": False},
    }
    if tmp_path is not None:
        data["output_dir"] = str(tmp_path / "runs")
    data.update(sections)
    return Recipe.model_validate(data)


class Recorder(nn.Module):
    """Wraps a model and keeps the last input it saw and the logits it gave."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.detach().clone()
        out = self.inner(x)
        self.logits = out.detach().clone()
        return out


class KnowsTheLabels(nn.Module):
    """Gives item i of a batch a logit margin of 5 at class i mod C: sure of the plain labels
    below, so that mixed targets cost visibly more than the plain ones."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 5.0 * F.one_hot(torch.arange(len(x)) % NUM_CLASSES, NUM_CLASSES) + self.w


def _task_and_batch(**regularization: float) -> tuple[Any, Recorder, torch.Tensor, torch.Tensor]:
    """The recipe's task, a probe model, and a batch of noise images (no two pixels alike)."""
    comp = build_components(_recipe(regularization=regularization))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 1, 8, 8, generator=g)
    return comp.task, Recorder(KnowsTheLabels()), x, torch.arange(32) % NUM_CLASSES


def _soft(y: torch.Tensor, lam: float) -> torch.Tensor:
    # torchvision's MixUp and CutMix mix each item with the next one in the batch (a roll by 1).
    one_hot = F.one_hot(y, NUM_CLASSES).float()
    return lam * one_hot + (1 - lam) * one_hot.roll(1, 0)


def test_mixup_mixes_inputs_and_targets_in_training_only() -> None:
    task, model, x, y = _task_and_batch(mixup_alpha=1.0)
    torch.manual_seed(1)  # the draw of lambda: 0.60 with this seed (far from 0 and 1)
    model.train()
    loss = task.losses(model, (x.clone(), y.clone()))["loss"].detach()
    assert model.seen is not None and model.logits is not None
    rolled = x.roll(1, 0)
    # The input the model saw is lam * x + (1 - lam) * (the next item), for one lam.
    d = x - rolled
    lam = float(((model.seen - rolled) * d).sum() / (d * d).sum())
    assert 0.05 < lam < 0.95, lam
    torch.testing.assert_close(model.seen, lam * x + (1 - lam) * rolled, rtol=1e-5, atol=1e-5)
    # The loss is the cross-entropy against the same mix of the labels, not the plain labels.
    expected = F.cross_entropy(model.logits, _soft(y, lam))
    plain = F.cross_entropy(model.logits, y)
    assert float(loss) == pytest.approx(float(expected), rel=1e-4)
    assert float(plain) < 0.1 and float(loss) > float(plain) + 0.5
    # Evaluation sees the images as they are.
    model.eval()
    task.losses(model, (x.clone(), y.clone()))
    assert torch.equal(model.seen, x)


def test_cutmix_pastes_a_box_of_the_next_image_and_mixes_targets_by_its_area() -> None:
    task, model, x, y = _task_and_batch(cutmix_alpha=1.0)
    torch.manual_seed(3)  # a box of a quarter of the image with this seed
    model.train()
    loss = task.losses(model, (x.clone(), y.clone()))["loss"].detach()
    assert model.seen is not None and model.logits is not None
    rolled = x.roll(1, 0)
    pasted = (model.seen != x).any(dim=(0, 1))  # pixels taken from the next image
    assert pasted.any() and not pasted.all()
    rows, cols = pasted.any(1).nonzero().flatten(), pasted.any(0).nonzero().flatten()
    box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    # One rectangle, the same for the whole batch, holding the next image's pixels.
    inside = torch.zeros_like(pasted)
    inside[box] = True
    torch.testing.assert_close(model.seen[..., inside], rolled[..., inside])
    torch.testing.assert_close(model.seen[..., ~inside], x[..., ~inside])
    lam = 1 - float(inside.float().mean())
    expected = F.cross_entropy(model.logits, _soft(y, lam))
    assert float(loss) == pytest.approx(float(expected), rel=1e-4)
    assert float(loss) > float(F.cross_entropy(model.logits, y)) + 0.5


class Confident(nn.Module):
    """Predicts class 3 with a logit margin of 50, whatever the input."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(x), NUM_CLASSES) + self.w
        out[:, 3] += 50.0
        return out


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_label_smoothing_costs_a_confident_correct_prediction(smoothing: float) -> None:
    comp = build_components(_recipe(regularization={"label_smoothing": smoothing}))
    x = torch.zeros(4, 1, 8, 8)
    y = torch.full((4,), 3)
    model = Confident().train()
    loss = float(comp.task.losses(model, (x, y))["loss"].detach())
    # Smoothing eps spreads eps / C of the target over every class: each wrong class costs
    # its 50-logit gap, so the loss is eps * (C - 1) / C * 50 (plus a vanishing log term).
    assert loss == pytest.approx(smoothing * (NUM_CLASSES - 1) / NUM_CLASSES * 50, abs=1e-3)
    if smoothing:
        assert loss > 1.0
    # The validation loss is the plain NLL either way.
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    metrics = comp.task.evaluate(model.eval(), data, comp.dist)
    assert metrics["val/loss"] < 1e-6 and metrics["val/top1"] == 1.0


SCRIPTS = {
    # top-1 by epoch; patience 2: epoch 2's best is not beaten at epochs 3 and 4
    "patience": ([0.5, 0.7, 0.7, 0.69, 0.9, 0.95, 0.96, 0.97], {"patience": 2}, 4),
    # steps of 0.02 are not improvements with min_delta 0.05
    "min_delta": (
        [0.5, 0.52, 0.54, 0.56, 0.6, 0.7, 0.8, 0.9],
        {"patience": 2, "min_delta": 0.05},
        3,
    ),
}


@pytest.mark.parametrize("case", list(SCRIPTS))
def test_early_stopping_ends_the_run_when_the_metric_stops_improving(
    case: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunekit.tasks import ClassificationTask

    values, early, expected_epochs = SCRIPTS[case]
    calls: list[int] = []

    def scripted(self: Any, model: nn.Module, loader: Any, dist: Any) -> dict[str, float]:
        calls.append(1)
        return {"val/loss": 1.0, "val/top1": values[len(calls) - 1], "val/top5": 1.0}

    monkeypatch.setattr(ClassificationTask, "evaluate", scripted)
    recipe = _recipe(
        tmp_path,
        train={
            "epochs": len(values),
            "batch_size": 32,
            "device": "cpu",
            "metric": "val/top1",
            "mode": "max",
            "max_steps_per_epoch": 1,
            "early_stopping": early,
        },
    )
    summary = train(recipe, out=tmp_path / "run", progress=False)
    assert summary["epochs_run"] == expected_epochs
    reason = summary["stop_reason"] or ""
    assert reason.startswith("early stopping") and "val/top1" in reason, reason
    assert summary["best"]["value"] == max(values[:expected_epochs])
