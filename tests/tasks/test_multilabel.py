"""Multi-label task: the two losses by hand, mAP and precision@k against scikit-learn, targets,
and a tiny training run that learns."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, precision_score
from tasks_helpers import tiny_net, tiny_tags
from torch.utils.data import DataLoader

from tunekit.core import DistInfo
from tunekit.engine import Trainer
from tunekit.errors import DataError
from tunekit.tasks import (
    MultilabelSoftmaxLoss,
    MultilabelTask,
    average_precision,
    mean_average_precision,
    multi_hot_dataset,
    precision_at_k,
    to_multi_hot,
)

Z = torch.tensor([[2.0, -1.0, 0.5, 0.0], [0.0, 1.0, -2.0, 3.0], [1.0, 1.0, 1.0, -1.0]])
Y = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])


def test_bce_loss_is_the_mean_over_samples_and_classes_by_hand() -> None:
    task = MultilabelTask(4, loss="bce")
    by_hand = 0.0
    for z_row, y_row in zip(Z.tolist(), Y.tolist(), strict=True):
        for z, y in zip(z_row, y_row, strict=True):
            p = 1 / (1 + math.exp(-z))
            by_hand -= y * math.log(p) + (1 - y) * math.log(1 - p)
    loss = task.losses(lambda x: x, (Z, Y))["loss"]  # type: ignore[arg-type]
    assert float(loss) == pytest.approx(by_hand / 12, rel=1e-6)


def test_softmax_loss_normalises_the_tags_and_skips_untagged_images_by_hand() -> None:
    # Image 0 has 2 tags (1/2 each), image 1 one tag, image 2 none (not counted).
    def log_softmax(row: list[float], j: int) -> float:
        return row[j] - math.log(sum(math.exp(v) for v in row))

    rows = Z.tolist()
    first = -(0.5 * log_softmax(rows[0], 0) + 0.5 * log_softmax(rows[0], 2))
    second = -log_softmax(rows[1], 3)
    assert float(MultilabelSoftmaxLoss()(Z, Y)) == pytest.approx((first + second) / 2, rel=1e-6)
    # Uniform logits cost log C whatever the tags: the initial-loss expectation.
    assert float(MultilabelSoftmaxLoss()(torch.zeros(3, 4), Y)) == pytest.approx(math.log(4))
    # Its gradient reaches the logits only through tagged images.
    z = Z.clone().requires_grad_(True)
    MultilabelSoftmaxLoss()(z, Y).backward()
    assert z.grad is not None and bool((z.grad[2] == 0).all()) and bool((z.grad[0] != 0).all())


def test_map_and_precision_at_k_match_scikit_learn_on_a_fixed_example() -> None:
    g = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 6, (40, 5), generator=g).float()  # ties on purpose
    targets = (torch.rand(40, 5, generator=g) < 0.35).float()
    targets[:, 4] = 0  # a class with no positive is left out of the mean
    ap = average_precision(scores, targets)
    for c in range(4):
        ref = average_precision_score(targets[:, c].numpy(), scores[:, c].numpy())
        assert float(ap[c]) == pytest.approx(ref, abs=1e-12)
    assert math.isnan(float(ap[4]))
    refs = [average_precision_score(targets[:, c].numpy(), scores[:, c].numpy()) for c in range(4)]
    assert mean_average_precision(scores, targets) == pytest.approx(sum(refs) / 4, abs=1e-12)

    scores = torch.randn(40, 5, generator=g)  # no ties: top-k is unambiguous
    for k in (1, 2, 3):
        top = scores.topk(k, dim=1).indices
        pred = torch.zeros_like(targets).scatter_(1, top, 1.0)
        ref = precision_score(targets.numpy(), pred.numpy(), average="samples", zero_division=0)
        assert precision_at_k(scores, targets, k) == pytest.approx(ref, abs=1e-12)
    # k is capped by the number of classes, as top5 is for a classifier.
    assert precision_at_k(scores, targets, 50) == pytest.approx(precision_at_k(scores, targets, 5))


def test_evaluate_reports_loss_map_and_each_precision_at_k() -> None:
    task = MultilabelTask(4, loss="softmax", precision_at=(1, 3))
    loader = [(Z, Y)]
    out = task.evaluate(lambda x: x, loader, DistInfo())  # type: ignore[arg-type]
    assert set(out) == {"val/loss", "val/mAP", "val/prec@1", "val/prec@3"}
    assert task.metric_names == ("val/loss", "val/mAP", "val/prec@1", "val/prec@3")
    assert out["val/mAP"] == pytest.approx(mean_average_precision(Z, Y))
    assert out["val/prec@1"] == pytest.approx(2 / 3)  # images 0 and 1 right, image 2 has no tag
    assert out["val/loss"] == pytest.approx(float(MultilabelSoftmaxLoss()(Z, Y)))


def test_targets_as_indices_or_multi_hot_and_their_mistakes() -> None:
    assert to_multi_hot([0, 2], 4, "x").tolist() == [1.0, 0.0, 1.0, 0.0]
    assert to_multi_hot(torch.tensor([3]), 4, "x").tolist() == [0.0, 0.0, 0.0, 1.0]
    assert to_multi_hot(torch.tensor([True, False, False, True]), 4, "x").tolist() == [1, 0, 0, 1]
    assert to_multi_hot([], 4, "x").sum() == 0
    with pytest.raises(
        DataError, match=r"item 7 of the training set has the tag index 4, outside 0\.\.3"
    ):
        to_multi_hot([1, 4], 4, "item 7 of the training set")
    with pytest.raises(DataError, match="multi-hot target of shape"):
        to_multi_hot(torch.zeros(3), 4, "x")
    with pytest.raises(DataError, match=r"the value 0\.5"):
        to_multi_hot(torch.tensor([0.5, 0.0, 0.0, 0.0]), 4, "x")

    class Listed(torch.utils.data.Dataset):  # targets listed up front, as torchvision's sets do
        def __init__(self) -> None:
            self.targets = [[0], [1, 9]]

        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> tuple[torch.Tensor, list[int]]:
            return torch.zeros(1), self.targets[i]

    with pytest.raises(DataError, match="item 1 of the validation set has the tag index 9"):
        multi_hot_dataset(Listed(), 4, "validation")


def _fit(loss: str, epochs: int = 3) -> tuple[float, float]:
    bundle = tiny_tags()
    torch.manual_seed(0)
    model = tiny_net()
    task = MultilabelTask(bundle.num_classes, loss=loss)
    train = DataLoader(
        bundle.train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    val = DataLoader(bundle.val, batch_size=128)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    trainer = Trainer(model, opt, train, task, epochs=epochs, val_loader=val)
    trainer.train()
    # The random baseline: mAP of scores that ignore the image.
    y = torch.cat([b[1] for b in val])
    chance = mean_average_precision(
        torch.rand(y.shape, generator=torch.Generator().manual_seed(0)), y
    )
    return trainer.last_eval["val/mAP"], chance


@pytest.mark.parametrize("loss", ["bce", "softmax"])
def test_a_tiny_multilabel_run_reaches_a_map_far_above_chance(loss: str) -> None:
    reached, chance = _fit(loss)
    assert chance < 0.45  # about the tags' frequency, 0.3
    assert reached > chance + 0.4, (reached, chance)


def test_softmax_loss_gradient_matches_its_definition() -> None:
    # -sum(t * log_softmax(z)) with t = y / k: the gradient is softmax(z) - t per tagged image.
    z = Z[:2].clone().requires_grad_(True)
    MultilabelSoftmaxLoss()(z, Y[:2]).backward()
    t = Y[:2] / Y[:2].sum(1, keepdim=True)
    assert z.grad is not None
    assert torch.allclose(z.grad, (F.softmax(Z[:2], 1) - t) / 2, atol=1e-6)
