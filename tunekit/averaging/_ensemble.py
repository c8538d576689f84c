"""Ensembles as plain modules: classifiers average probabilities, detectors merge boxes.

Both are ordinary ``nn.Module`` s that TorchScript, ``torch.export`` and ONNX
can take as they are (no Python-side state), so the module that is evaluated
is the module that is exported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_iou

from tunekit.errors import TunekitError

Merge = Literal["nms", "wbf"]


class ClassifierEnsemble(nn.Module):
    """Runs every member and averages their softmax probabilities.

    Args:
        members: classifiers mapping the same input to logits over the same classes.
        log_probs: return ``log`` of the averaged probabilities instead of the
            probabilities. A task that applies ``cross_entropy`` to the output
            then measures the ensemble's NLL, and top-k is unchanged.
    """

    def __init__(self, members: Sequence[nn.Module], *, log_probs: bool = False) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.log_probs = log_probs

    def forward(self, x: Tensor) -> Tensor:
        probs: list[Tensor] = []
        for member in self.members:
            probs.append(torch.softmax(member(x).float(), dim=1))
        mean = torch.stack(probs).mean(dim=0)
        if self.log_probs:
            # The floor keeps a class that every member rules out finite.
            return torch.log(mean.clamp_min(1e-30))
        return mean


def weighted_box_fusion(
    boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float, num_members: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Weighted box fusion (Solovyev et al.) of pooled detections.

    Boxes are taken by falling score; each joins the first cluster of its class
    whose fused box it overlaps by more than ``iou_threshold`` (else starts one).
    A cluster's box is the score-weighted mean of its boxes, its score the mean
    score scaled by ``min(size, num_members) / num_members``, so a box that only
    one member saw counts less.

    Written here because torchvision has NMS but no fusion, and the
    ``ensemble-boxes`` package is NumPy code that cannot be exported.
    """
    order = torch.argsort(scores, descending=True)
    boxes, scores, labels = boxes[order], scores[order], labels[order]
    sums: list[Tensor] = []
    weights: list[Tensor] = []
    counts: list[int] = []
    cluster_labels: list[int] = []
    fused: list[Tensor] = []
    for i in range(boxes.shape[0]):
        box, score, label = boxes[i], scores[i], int(labels[i])
        best = -1
        if len(fused) > 0:
            ious = box_iou(box.unsqueeze(0), torch.stack(fused))[0]
            same = torch.tensor(cluster_labels, device=boxes.device) == label
            ious = torch.where(same, ious, torch.full_like(ious, -1.0))
            j = int(torch.argmax(ious))
            if float(ious[j]) > iou_threshold:
                best = j
        if best < 0:
            sums.append(box * score)
            weights.append(score)
            counts.append(1)
            cluster_labels.append(label)
            fused.append(box)
        else:
            sums[best] = sums[best] + box * score
            weights[best] = weights[best] + score
            counts[best] = counts[best] + 1
            fused[best] = sums[best] / weights[best]
    if len(fused) == 0:
        return boxes[:0], scores[:0], labels[:0]
    n = torch.tensor(counts, device=boxes.device, dtype=scores.dtype)
    out_scores = (
        torch.stack(weights) / n * torch.clamp(n, max=float(num_members)) / float(num_members)
    )
    out_labels = torch.tensor(cluster_labels, device=boxes.device, dtype=labels.dtype)
    return torch.stack(fused), out_scores, out_labels


class _ListDetections(nn.Module):
    """Makes a torchvision detector return its detections in eager and TorchScript alike.

    A scripted torchvision detector returns ``(losses, detections)``; an eager
    one in eval mode returns ``detections``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        if torch.jit.is_scripting():
            return self.model(images)[1]
        return self.model(images)


class DetectorEnsemble(nn.Module):
    """Pools every member's detections per image, then merges them.

    Args:
        members: detectors mapping a list of images to a list of
            ``{"boxes", "scores", "labels"}`` dicts (torchvision's convention).
        merge: ``"nms"`` (class-wise NMS over the pooled boxes) or ``"wbf"``
            (weighted box fusion).
        iou_threshold: overlap above which boxes of one class are the same object.
        max_detections: kept per image, best first.
    """

    def __init__(
        self,
        members: Sequence[nn.Module],
        *,
        merge: Merge = "nms",
        iou_threshold: float = 0.55,
        max_detections: int = 100,
    ) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        wrapped = [_ListDetections(m) if hasattr(m, "eager_outputs") else m for m in members]
        self.members = nn.ModuleList(wrapped)
        self.use_wbf = merge == "wbf"
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        outputs: list[list[dict[str, Tensor]]] = []
        for member in self.members:
            outputs.append(member(images))
        merged: list[dict[str, Tensor]] = []
        for i in range(len(images)):
            boxes = torch.cat([out[i]["boxes"] for out in outputs])
            scores = torch.cat([out[i]["scores"] for out in outputs])
            labels = torch.cat([out[i]["labels"] for out in outputs])
            if self.use_wbf:
                boxes, scores, labels = weighted_box_fusion(
                    boxes, scores, labels, self.iou_threshold, len(outputs)
                )
                keep = torch.argsort(scores, descending=True)[: self.max_detections]
            else:
                keep = batched_nms(boxes, scores, labels, self.iou_threshold)[: self.max_detections]
            merged.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return merged


def ensemble_for_task(
    members: Sequence[nn.Module],
    kind: str = "classification",
    *,
    log_probs: bool = True,
    merge: Merge = "nms",
) -> nn.Module:
    """The ensemble module for a recipe's task (``log_probs`` for evaluation with a classification task)."""
    if kind == "detection":
        return DetectorEnsemble(members, merge=merge)
    if kind != "classification":
        # Averaging softmax probabilities is wrong for per-tag sigmoids; refused, not guessed.
        raise TunekitError(
            f"ensembles of {kind} models are not supported: members are averaged as softmax "
            "classifiers, which is wrong for per-tag sigmoids",
        )
    return ClassifierEnsemble(members, log_probs=log_probs)
