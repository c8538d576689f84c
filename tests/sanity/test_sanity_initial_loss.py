"""Initial loss: log C for a healthy classifier, a named cause for planted faults, detectors per head."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import pytest
import torch
from sanity_helpers import digits_cnn, digits_loader, shuffled_loader
from torch import nn

import tunekit
from tunekit.sanity import SanityError
from tunekit.testing import BNNet, box_batches, tiny_faster_rcnn, tiny_fcos, tiny_retinanet


def _model() -> nn.Module:
    torch.manual_seed(0)
    return BNNet(num_classes=4)


def test_healthy_classifier_passes_at_log_c() -> None:
    res = tunekit.check_initial_loss(
        _model(), shuffled_loader(), nn.CrossEntropyLoss(), num_classes=4
    )
    assert res.verdict.status == "PASS", res.verdict
    assert res.expected == pytest.approx(math.log(4))
    assert abs(res.measured - math.log(4)) < 0.15 * math.log(4)
    assert len(res.per_batch) == 4
    assert res.final_layer == "fc"


def test_label_smoothing_keeps_log_c_as_the_expectation() -> None:
    # Against a uniform prediction every target distribution costs log C.
    res = tunekit.check_initial_loss(
        _model(), shuffled_loader(), nn.CrossEntropyLoss(label_smoothing=0.2)
    )
    assert res.num_classes == 4  # read from the logits
    assert res.expected == pytest.approx(math.log(4))
    assert res.verdict.status == "PASS"


def test_digits_cnn_passes_and_its_final_layer_scaled_by_10_fails_naming_the_weights() -> None:
    model, loader = digits_cnn(), digits_loader()
    healthy = tunekit.check_initial_loss(model, loader, nn.CrossEntropyLoss(), num_classes=10)
    assert healthy.verdict.status == "PASS", healthy.verdict
    with torch.no_grad():
        model.fc.weight.mul_(10)
    res = tunekit.check_initial_loss(model, loader, nn.CrossEntropyLoss(), num_classes=10)
    assert res.verdict.status == "FAIL"
    assert res.measured > 1.5 * math.log(10)
    assert "weights of the final layer 'fc'" in res.verdict.reason
    assert "scale down" in res.verdict.fix


def test_final_layer_bias_fails_naming_the_bias() -> None:
    model = _model()
    with torch.no_grad():
        model.fc.bias.copy_(torch.tensor([6.0, 0.0, 0.0, 0.0]))
    res = tunekit.check_initial_loss(model, shuffled_loader(), nn.CrossEntropyLoss(), num_classes=4)
    assert res.verdict.status == "FAIL"
    assert "bias of the final layer 'fc'" in res.verdict.reason
    assert (
        res.class_bias is not None and res.logit_std is not None and res.class_bias > res.logit_std
    )


def test_plot_data_and_figure() -> None:
    res = tunekit.check_initial_loss(
        _model(), shuffled_loader(), nn.CrossEntropyLoss(), num_classes=4
    )
    data = res.plot_data()
    assert data["names"] == ["loss"] and data["expected"] == [pytest.approx(math.log(4))]
    fig = res.plot()
    assert isinstance(fig, go.Figure) and len(fig.data) == 2


def test_fcos_heads_pass_against_their_priors() -> None:
    torch.manual_seed(0)
    res = tunekit.check_initial_loss(tiny_fcos(), box_batches())
    heads = {h.name: h for h in res.heads}
    assert res.verdict.status == "PASS", res.verdict
    assert heads["bbox_ctrness"].expected == pytest.approx(math.log(2))
    assert heads["foreground probability"].expected == pytest.approx(0.01)
    assert heads["foreground probability"].measured == pytest.approx(0.01, rel=0.5)
    assert heads["bbox_regression"].status is None  # no expectation for box regression


def test_retinanet_without_prior_bias_fails_naming_the_bias() -> None:
    torch.manual_seed(0)
    model = tiny_retinanet()
    assert tunekit.check_initial_loss(model, box_batches()).verdict.status == "PASS"
    with torch.no_grad():
        model.head.classification_head.cls_logits.bias.zero_()  # the usual slip: no prior init
    res = tunekit.check_initial_loss(model, box_batches())
    assert res.verdict.status == "FAIL"
    assert "bias of 'head.classification_head.cls_logits' sets a prior of 0.5" in res.verdict.reason


def test_faster_rcnn_softmax_and_objectness_heads() -> None:
    torch.manual_seed(0)
    model = tiny_faster_rcnn(num_classes=3)
    res = tunekit.check_initial_loss(model, box_batches(n_batches=1))
    heads = {h.name: h for h in res.heads}
    assert heads["loss_classifier"].expected == pytest.approx(math.log(3))  # 2 classes + background
    assert heads["loss_objectness"].expected == pytest.approx(math.log(2))
    assert (
        "foreground probability" not in heads
    )  # the RPN's cls_logits is objectness, not a focal head
    assert res.verdict.status == "PASS", res.verdict
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([0.0, 8.0, 0.0]))
    bad = tunekit.check_initial_loss(model, box_batches(n_batches=1))
    assert bad.verdict.status == "FAIL"
    assert "loss_classifier" in bad.verdict.reason and "above" in bad.verdict.reason


def test_num_classes_that_do_not_match_the_logits_is_an_error() -> None:
    with pytest.raises(SanityError, match="outputs 4 values per sample but num_classes=10"):
        tunekit.check_initial_loss(
            _model(), shuffled_loader(), nn.CrossEntropyLoss(), num_classes=10
        )
