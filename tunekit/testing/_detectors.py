"""Tiny torchvision detectors (FCOS, RetinaNet, Faster R-CNN) on 64x64 images, and a few
random images with boxes to feed them."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

#: The side of the images the tiny detectors take.
SIZE = 64


def _backbone(width: int = 32) -> nn.Module:
    net = nn.Sequential(
        nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(), nn.Conv2d(width, width, 3, 2, 1), nn.ReLU()
    )
    net.out_channels = width  # type: ignore[assignment]
    return net


def tiny_fcos(num_classes: int = 3) -> nn.Module:
    """A one-level FCOS (focal-loss classification, centerness and box heads)."""
    anchors = AnchorGenerator(sizes=((16,),), aspect_ratios=((1.0,),))
    return FCOS(_backbone(), num_classes, min_size=SIZE, max_size=SIZE, anchor_generator=anchors)


def tiny_retinanet(num_classes: int = 3) -> nn.Module:
    """A one-level RetinaNet (focal-loss classification and box heads)."""
    anchors = AnchorGenerator(sizes=((16, 32),), aspect_ratios=((0.5, 1.0, 2.0),))
    return RetinaNet(
        _backbone(), num_classes, min_size=SIZE, max_size=SIZE, anchor_generator=anchors
    )


def tiny_faster_rcnn(num_classes: int = 3) -> nn.Module:
    """A one-level Faster R-CNN (RPN objectness, softmax box classifier over C+1)."""
    anchors = AnchorGenerator(sizes=((16, 32),), aspect_ratios=((0.5, 1.0, 2.0),))
    pool = MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2)
    return FasterRCNN(
        _backbone(),
        num_classes,
        min_size=SIZE,
        max_size=SIZE,
        rpn_anchor_generator=anchors,
        box_roi_pool=pool,
        representation_size=64,
    )


def box_batches(
    n_batches: int = 2, per_batch: int = 2, num_classes: int = 3, seed: int = 0
) -> list[Any]:
    """Batches of (images, targets): dark images with one or two bright boxes each (labels from 1)."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n_batches):
        images, targets = [], []
        for _ in range(per_batch):
            img = 0.1 * torch.rand(3, SIZE, SIZE, generator=g)
            boxes, labels = [], []
            for _ in range(int(torch.randint(1, 3, (1,), generator=g))):
                x0, y0 = torch.randint(0, SIZE - 24, (2,), generator=g).tolist()
                w, h = torch.randint(12, 24, (2,), generator=g).tolist()
                label = int(torch.randint(1, num_classes, (1,), generator=g))
                img[label % 3, y0 : y0 + h, x0 : x0 + w] = 1.0
                boxes.append([x0, y0, x0 + w, y0 + h])
                labels.append(label)
            images.append(img)
            targets.append(
                {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)}
            )
        batches.append((images, targets))
    return batches
