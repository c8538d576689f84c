"""Sanity checks on a multi-label model: the initial loss each loss implies, and the overfit
check's exact-match accuracy."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tasks_helpers import tiny_net, tiny_tags
from torch import nn
from torch.utils.data import DataLoader

import tunekit
from tunekit.config import Recipe
from tunekit.sanity import SanityOptions, run_sanity
from tunekit.tasks import MultilabelSoftmaxLoss


def _loader(p: float = 0.3) -> DataLoader:
    return DataLoader(tiny_tags(p=p).train, batch_size=64, shuffle=False)


def _freq() -> torch.Tensor:
    return torch.cat([y for _, y in _loader()][:4]).mean(0)


def test_bce_with_logits_near_zero_expects_log_2() -> None:
    res = tunekit.check_initial_loss(tiny_net(), _loader(), nn.BCEWithLogitsLoss())
    assert res.heads[0].kind == "sigmoid"
    assert res.expected == pytest.approx(math.log(2), rel=0.02)  # the default bias is near 0
    assert res.verdict.status == "PASS", res.verdict
    assert abs(res.measured - math.log(2)) < 0.15 * math.log(2)
    assert "log 2" in res.verdict.expected
    assert "prior's entropy" not in res.verdict.reason  # 30% tags: H(0.3) is 0.88 log 2
    # Sparse tags (8%): the prior's entropy is far below log 2, worth a bias of its own.
    sparse = tunekit.check_initial_loss(tiny_net(), _loader(p=0.08), nn.BCEWithLogitsLoss())
    assert sparse.verdict.status == "PASS", sparse.verdict
    assert "prior's entropy" in sparse.verdict.reason


def test_bce_with_the_bias_at_the_prior_expects_the_prior_entropy() -> None:
    model = tiny_net()
    q = _freq()
    with torch.no_grad():
        model.fc.bias.copy_(torch.log(q / (1 - q)))
    res = tunekit.check_initial_loss(model, _loader(), nn.BCEWithLogitsLoss())
    entropy = float(-(q * q.log() + (1 - q) * (1 - q).log()).mean())
    assert res.expected == pytest.approx(entropy, rel=1e-4)
    assert res.expected < 0.9 * math.log(2)
    assert res.verdict.status == "PASS", res.verdict
    assert abs(res.measured - entropy) < 0.15 * entropy


def test_bce_names_large_final_weights_and_a_bias_far_from_the_tags() -> None:
    model = tiny_net()
    with torch.no_grad():
        model.fc.weight.mul_(20)
    res = tunekit.check_initial_loss(model, _loader(), nn.BCEWithLogitsLoss())
    assert res.verdict.status == "FAIL"
    assert "weights of the final layer 'fc' are too large" in res.verdict.reason

    model = tiny_net()
    with torch.no_grad():
        model.fc.bias.fill_(3.0)  # every tag at p = 0.95, while 30% of them are present
    res = tunekit.check_initial_loss(model, _loader(), nn.BCEWithLogitsLoss())
    assert res.verdict.status == "FAIL"
    assert "bias of the final layer 'fc'" in res.verdict.reason
    assert "log(q/(1-q))" in res.verdict.fix


def test_softmax_over_normalised_tags_expects_log_c() -> None:
    res = tunekit.check_initial_loss(tiny_net(), _loader(), MultilabelSoftmaxLoss())
    assert res.heads[0].kind == "softmax"
    assert res.expected == pytest.approx(math.log(6))
    assert res.verdict.status == "PASS", res.verdict


def test_overfit_counts_a_sample_right_when_its_tags_are_its_top_scores() -> None:
    model = tiny_net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    res = tunekit.overfit_small_sample(
        model, _loader(), MultilabelSoftmaxLoss(), optimizer=opt, num_batches=2, max_steps=300
    )
    assert res.accuracies, "multi-hot targets get an exact-match accuracy"
    assert res.outcome == "fit" and res.accuracies[-1] == 1.0, res.verdict
    assert res.accuracies[0] < 0.5


def test_sanity_of_a_multilabel_recipe_checks_its_own_loss(tmp_path: Path) -> None:
    recipe = Recipe.model_validate(
        {
            "task": "multilabel",
            "data": {"builder": "tasks_helpers:tiny_tags"},
            "model": {"builder": "tasks_helpers:tiny_net"},
            "multilabel": {"loss": "bce"},
            "optim": {"name": "adamw", "lr": 0.01},
            "train": {"batch_size": 64, "metric": "val/mAP", "device": "cpu"},
        }
    )
    report = run_sanity(recipe, options=SanityOptions(checks=("initial_loss", "overfit")))
    assert report.initial is not None and report.initial.heads[0].kind == "sigmoid"
    assert report.initial.verdict.status == "PASS", report.initial.verdict
    assert report.overfit is not None and report.overfit.accuracies
    assert report.overfit.outcome == "fit", report.overfit.verdict
