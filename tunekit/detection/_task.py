"""Detection as a trainer task: the detector's loss dict, and COCO mAP over the whole val set.

Validation is sharded over ranks (each image on exactly one rank); every
rank's predictions are gathered to rank 0, which checks that each val image
was seen exactly once and runs pycocotools' COCOeval once; the numbers are
then broadcast so every rank returns the same metrics.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.distributed as torch_dist
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn
from torch.utils.data import Dataset, Subset

from tunekit.core import DistInfo, broadcast_object

from ._coco import CocoDetection

#: COCOeval's twelve summary numbers, in its order, as metric names.
COCO_METRICS = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)


def coco_base(ds: Dataset[Any]) -> tuple[CocoDetection, list[int]]:
    """The CocoDetection under ``ds`` (through any Subsets) and the image ids ``ds`` holds, in order."""
    indices: list[int] | None = None
    while isinstance(ds, Subset):
        idx = list(ds.indices)
        indices = idx if indices is None else [idx[i] for i in indices]
        ds = ds.dataset
    if not isinstance(ds, CocoDetection):
        raise TypeError(
            f"detection evaluation needs a CocoDetection validation set, got {type(ds).__name__}"
        )
    ids = ds.ids if indices is None else [ds.ids[i] for i in indices]
    return ds, list(ids)


def to_coco_results(
    outputs: Sequence[dict[str, torch.Tensor]],
    image_ids: Sequence[int],
    label_to_cat: dict[int, int],
) -> list[dict[str, Any]]:
    """Detector outputs (XYXY boxes in image pixels) as COCO result entries (XYWH, category ids)."""
    results = []
    for out, image_id in zip(outputs, image_ids):
        boxes = out["boxes"].detach().float().cpu()
        if boxes.numel():
            boxes[:, 2:] -= boxes[:, :2]
        for box, label, score in zip(
            boxes.tolist(), out["labels"].tolist(), out["scores"].tolist()
        ):
            cat = label_to_cat.get(int(label))
            if cat is None:  # the background label of a two-stage detector never scores; be safe
                continue
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": cat,
                    "bbox": [round(v, 3) for v in box],
                    "score": round(float(score), 5),
                }
            )
    return results


def coco_metrics(
    coco_gt: COCO, results: list[dict[str, Any]], image_ids: Sequence[int]
) -> dict[str, float]:
    """COCOeval (bbox) over exactly ``image_ids``; the twelve summary numbers by name.

    A number COCOeval cannot compute (-1: no ground truth of that size) is NaN.
    No detections at all score 0 (COCOeval itself cannot load an empty list).
    """
    if not results:
        return {name: 0.0 for name in COCO_METRICS}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: (float(v) if v >= 0 else math.nan) for name, v in zip(COCO_METRICS, ev.stats)}


def _gather(obj: Any, dist: DistInfo) -> list[Any]:
    if not (dist.distributed and torch_dist.is_available() and torch_dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.world_size
    torch_dist.all_gather_object(out, obj)
    return out


class DetectionTask:
    """Loss terms and COCO mAP for a torchvision detector.

    Args:
        val_set: the validation set (a CocoDetection, or a Subset of one).
    """

    #: The keys :meth:`evaluate` returns.
    metric_names: ClassVar[tuple[str, ...]] = (
        *(f"val/{k}" for k in COCO_METRICS),
        "val/images",
        "val/detections",
    )

    def __init__(self, val_set: Dataset[Any]) -> None:
        self.base, self.val_ids = coco_base(val_set)
        #: Rank 0: the predictions of the last evaluation, as COCO results.
        self.last_results: list[dict[str, Any]] = []

    def to_device(
        self, batch: Any, device: torch.device
    ) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
        images, targets = batch
        # Plain tensors: the detectors' internals do not need the tv_tensors types.
        imgs = [img.as_subclass(torch.Tensor).to(device, non_blocking=True) for img in images]
        tgts = [
            {
                "boxes": t["boxes"].as_subclass(torch.Tensor).to(device, non_blocking=True),
                "labels": t["labels"].to(device, non_blocking=True),
                "image_id": int(t["image_id"]),
            }
            for t in targets
        ]
        return imgs, tgts

    def losses(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """The detector's own loss dict (e.g. FCOS: classification, bbox_regression, bbox_ctrness)."""
        images, targets = batch
        out = model(images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])
        return {k: v.float() for k, v in out.items()}

    @torch.no_grad()
    def predict(
        self, model: nn.Module, loader: Iterable[Any], device: torch.device
    ) -> tuple[list[dict[str, Any]], list[int]]:
        """This rank's predictions (COCO results) and the image ids it saw."""
        results: list[dict[str, Any]] = []
        seen: list[int] = []
        for batch in loader:
            images, targets = self.to_device(batch, device)
            outputs = model(images)
            ids = [t["image_id"] for t in targets]
            results += to_coco_results(outputs, ids, self.base.label_to_cat)
            seen += ids
        return results, seen

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Iterable[Any], dist: DistInfo) -> dict[str, float]:
        """``val/AP``, ``val/AP50``, ... over the whole validation set, the same on every rank."""
        results, seen = self.predict(model, loader, dist.device)
        gathered = _gather((results, seen), dist)
        metrics: dict[str, float] | None = None
        if dist.is_main:
            all_results = [r for part in gathered for r in part[0]]
            all_seen = [i for part in gathered for i in part[1]]
            if sorted(all_seen) != sorted(self.val_ids):
                dup = len(all_seen) - len(set(all_seen))
                lost = len(set(self.val_ids) - set(all_seen))
                raise RuntimeError(
                    f"evaluation saw {len(all_seen)} images for a val set of {len(self.val_ids)} "
                    f"({dup} duplicated, {lost} missing); the val loader must shard without padding"
                )
            stats = coco_metrics(self.base.coco, all_results, self.val_ids)
            metrics = {f"val/{k}": v for k, v in stats.items()}
            metrics["val/images"] = float(len(set(all_seen)))
            metrics["val/detections"] = float(len(all_results))
            self.last_results = all_results
        out = broadcast_object(metrics)
        assert out is not None
        return dict(out)


def write_results(results: list[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Writes COCO results JSON atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(results))
    tmp.replace(path)
    return path
