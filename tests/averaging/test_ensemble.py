"""Ensemble modules: averaged probabilities, pooled boxes with NMS or weighted box fusion."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor, nn

from tunekit.averaging import ClassifierEnsemble, DetectorEnsemble, cycle_ended, weighted_box_fusion
from tunekit.testing import TinyMLP


def test_classifier_ensemble_averages_softmax_probabilities() -> None:
    torch.manual_seed(0)
    members = [TinyMLP(16, 5), TinyMLP(16, 5), TinyMLP(16, 5)]
    x = torch.randn(7, 16)
    expected = sum(m(x).softmax(1) for m in members) / 3
    probs = ClassifierEnsemble(members)(x)
    torch.testing.assert_close(probs, expected)
    torch.testing.assert_close(probs.sum(1), torch.ones(7))
    logp = ClassifierEnsemble(members, log_probs=True)(x)
    torch.testing.assert_close(logp, expected.log())
    # cross-entropy on the log-probabilities is the ensemble's NLL
    y = torch.arange(7) % 5
    nll = -expected[torch.arange(7), y].log().mean()
    torch.testing.assert_close(nn.functional.cross_entropy(logp, y), nll)
    with pytest.raises(ValueError):
        ClassifierEnsemble([])


class FixedDetector(nn.Module):
    """Returns the same detections for every image (torchvision's output convention)."""

    def __init__(self, boxes: list[list[float]], scores: list[float], labels: list[int]) -> None:
        super().__init__()
        self.register_buffer("boxes", torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        self.register_buffer("scores", torch.tensor(scores, dtype=torch.float32))
        self.register_buffer("labels", torch.tensor(labels, dtype=torch.int64))

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        return [{"boxes": self.boxes, "scores": self.scores, "labels": self.labels} for _ in images]


def _members() -> list[nn.Module]:
    a = FixedDetector([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.3], [1, 1])
    b = FixedDetector([[1, 1, 10, 10], [0, 0, 10, 10]], [0.8, 0.7], [1, 2])
    return [a, b]


def test_detector_ensemble_pools_then_class_wise_nms() -> None:
    out = DetectorEnsemble(_members(), merge="nms", iou_threshold=0.5)([torch.zeros(3, 64, 64)] * 2)
    assert len(out) == 2
    det = out[0]
    # b's label-1 box overlaps a's (IoU 0.81) and goes; b's label-2 box is another class and stays.
    assert det["scores"].tolist() == pytest.approx([0.9, 0.7, 0.3])
    assert det["labels"].tolist() == [1, 2, 1]
    assert det["boxes"][0].tolist() == [0, 0, 10, 10]


def test_weighted_box_fusion_numbers() -> None:
    boxes = torch.tensor(
        [[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], dtype=torch.float32
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.3])
    labels = torch.tensor([1, 1, 2, 1])
    fb, fs, fl = weighted_box_fusion(boxes, scores, labels, 0.55, num_members=2)
    assert fl.tolist() == [1, 2, 1]
    torch.testing.assert_close(fb[0], (0.9 * boxes[0] + 0.8 * boxes[1]) / 1.7)
    # mean score x min(size, members) / members: 0.85 for the pair, halved for the lone boxes
    assert fs.tolist() == pytest.approx([0.85, 0.35, 0.15])
    e = weighted_box_fusion(boxes[:0], scores[:0], labels[:0], 0.55, 2)
    assert [t.numel() for t in e] == [0, 0, 0]


def test_detector_ensemble_scripts_to_the_same_outputs() -> None:
    images = [torch.zeros(3, 32, 32)]
    for merge in ("nms", "wbf"):
        ens = DetectorEnsemble(_members(), merge=merge).eval()  # type: ignore[arg-type]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.script(ens)
        eager, script = ens(images), scripted(images)
        for k in ("boxes", "scores", "labels"):
            assert torch.equal(eager[0][k], script[0][k]), (merge, k)


def test_torchvision_detectors_are_ensembled_in_eager_and_script() -> None:
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    def tiny_fcos(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        body = nn.Sequential()
        body.add_module("c1", nn.Conv2d(3, 8, 3, 2, 1))
        body.add_module("c2", nn.Conv2d(8, 8, 3, 2, 1))
        backbone = BackboneWithFPN(
            body, {"c1": "0", "c2": "1"}, [8, 8], 32, extra_blocks=LastLevelP6P7(32, 32)
        )
        anchors = AnchorGenerator(sizes=((8,), (16,), (32,), (64,)), aspect_ratios=((1.0,),) * 4)
        model = FCOS(
            backbone,
            num_classes=3,
            min_size=32,
            max_size=32,
            score_thresh=0.0,
            detections_per_img=5,
            anchor_generator=anchors,
        )
        return model.eval()

    ens = DetectorEnsemble([tiny_fcos(0), tiny_fcos(1)], merge="nms").eval()
    images = [torch.rand(3, 32, 32)]
    with torch.no_grad():
        eager = ens(images)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            script = torch.jit.script(ens)(images)
    assert 0 < eager[0]["boxes"].shape[0] <= 10
    torch.testing.assert_close(eager[0]["boxes"], script[0]["boxes"], rtol=1e-5, atol=1e-4)
    assert torch.equal(eager[0]["labels"], script[0]["labels"])


@pytest.mark.parametrize(
    ("steps_per_epoch", "cycle_epochs", "mult", "ends"),
    [
        (10, 2.0, 1.0, {20: 0, 40: 1, 60: 2}),
        (10, 1.0, 2.0, {10: 0, 30: 1, 70: 2}),
        (4, 1.5, 1.0, {6: 0, 12: 1}),
    ],
)
def test_cycle_ends(
    steps_per_epoch: int, cycle_epochs: float, mult: float, ends: dict[int, int]
) -> None:
    last = max(ends)
    found = {
        s: c
        for s in range(last + 1)
        if (c := cycle_ended(s, steps_per_epoch, cycle_epochs, mult)) is not None
    }
    assert found == ends
