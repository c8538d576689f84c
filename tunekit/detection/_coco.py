"""COCO-format detection data: checked annotations, v2 transforms with box types, collate.

pycocotools reads the instances file. Every annotation is checked once, when
the dataset is built, the way COCO tools treat them: crowd regions are kept
for evaluation (COCOeval ignores detections inside them) but never trained
on, images without annotations stay in the set, and a box that is degenerate
or lies outside its image is either an error or skipped and counted, never
trained on as it is. Evaluation uses a COCO object built from the same
checked annotations, so training and scoring see the same ground truth.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from tunekit.errors import DataError

BadPolicy = Literal["skip", "error"]
BAD_POLICIES: tuple[str, ...] = ("skip", "error")

# Boxes that poke out of their image by less than this (in pixels) are clipped
# without comment: COCO's own files have many that end at width + 0.01.
CLIP_TOLERANCE = 1.0


class DataWarning(UserWarning):
    """Annotations that were skipped or changed while a dataset was read."""


Target = dict[str, Any]


@dataclass
class AnnotationReport:
    """What checking an instances file found: counts by problem and an example id of each."""

    total: int = 0
    kept: int = 0
    crowd: int = 0
    skipped: dict[str, list[int]] = field(default_factory=dict)
    clipped: list[int] = field(default_factory=list)

    @property
    def n_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def message(self, ann_file: str) -> str | None:
        """One line for the warning, or None when nothing was skipped or changed."""
        parts = [f"{len(ids)} {why} (e.g. id {ids[0]})" for why, ids in self.skipped.items()]
        if self.clipped:
            parts.append(
                f"clipped {len(self.clipped)} boxes to their image (e.g. id {self.clipped[0]})"
            )
        if not parts:
            return None
        return (
            f"{ann_file}: skipped {self.n_skipped} of {self.total} annotations, as COCO tools do: "
            + "; ".join(parts)
            + " (set data.kwargs.bad_annotations=error to stop on them instead)"
        )


def load_coco(ann_file: str | os.PathLike[str]) -> COCO:
    """pycocotools' COCO for ``ann_file``, with a one-line DataError for a missing or malformed file."""
    path = Path(ann_file)
    if not path.is_file():
        raise DataError("no such annotations file", file=str(path))
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not a JSON file ({exc})", file=str(path)) from None
    if not isinstance(data, dict) or not all(
        k in data for k in ("images", "annotations", "categories")
    ):
        raise DataError(
            "not a COCO instances file: needs the keys 'images', 'annotations' and 'categories'",
            file=str(path),
        )
    return coco_from_dict(data)


def coco_from_dict(data: dict[str, Any]) -> COCO:
    """A pycocotools COCO over an in-memory dataset (its index printing silenced)."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _bad(policy: str, file: str, ann: dict[str, Any], problem: str) -> None:
    if policy == "error":
        raise DataError(
            f"annotation id {ann.get('id')} (image id {ann.get('image_id')}): {problem}; "
            "fix the file, or set data.kwargs.bad_annotations=skip to skip such annotations",
            file=file,
        )


def check_annotations(
    data: dict[str, Any], *, file: str, images_dir: Path | None, policy: str = "skip"
) -> tuple[dict[str, Any], AnnotationReport]:
    """The instances ``data`` with every annotation checked (a new dict; ``data`` is not changed).

    Always an error: an annotation whose image or category id is not in the
    file, a bbox that is not four numbers, an image without a size, a missing
    image file. Skipped (or an error with ``policy="error"``): a box with zero
    or negative width or height, a box entirely outside its image. Clipped: a
    box that pokes out of its image by more than :data:`CLIP_TOLERANCE`.
    """
    if policy not in BAD_POLICIES:
        raise DataError(
            f"value {policy!r} is not allowed: choose one of {', '.join(BAD_POLICIES)}",
            field="data.kwargs.bad_annotations",
        )
    images = {}
    for img in data["images"]:
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise DataError(f"image entry {img!r:.80} needs 'id' and 'file_name'", file=file)
        if not (
            isinstance(img.get("width"), int | float) and isinstance(img.get("height"), int | float)
        ):
            raise DataError(
                f"image id {img['id']} ({img['file_name']}) has no width/height", file=file
            )
        images[img["id"]] = img
    if images_dir is not None:
        for img in images.values():
            if not (images_dir / img["file_name"]).is_file():
                raise DataError(
                    f"image id {img['id']}: image file {str(images_dir / img['file_name'])!r} does not exist "
                    f"(images are read from {str(images_dir)!r})",
                    file=file,
                )
    cat_ids = {c["id"] for c in data["categories"]}
    report = AnnotationReport(total=len(data["annotations"]))
    kept = []
    for ann in data["annotations"]:
        aid = ann.get("id")
        if ann.get("image_id") not in images:
            raise DataError(
                f"annotation id {aid}: image id {ann.get('image_id')!r} is not in 'images'",
                file=file,
            )
        if ann.get("category_id") not in cat_ids:
            raise DataError(
                f"annotation id {aid} (image id {ann['image_id']}): unknown category id {ann.get('category_id')!r}; "
                f"the file's categories are {sorted(cat_ids)}",
                file=file,
            )
        bbox = ann.get("bbox")
        if not (
            isinstance(bbox, list | tuple)
            and len(bbox) == 4
            and all(isinstance(v, int | float) for v in bbox)
        ):
            raise DataError(
                f"annotation id {aid} (image id {ann['image_id']}): bbox {bbox!r} is not [x, y, width, height]",
                file=file,
            )
        x, y, w, h = (float(v) for v in bbox)
        if not all(np.isfinite([x, y, w, h])):
            raise DataError(
                f"annotation id {aid} (image id {ann['image_id']}): bbox {bbox!r} is not finite",
                file=file,
            )
        img = images[ann["image_id"]]
        width, height = float(img["width"]), float(img["height"])
        if w <= 0 or h <= 0:
            _bad(policy, file, ann, f"bbox {bbox} has a zero or negative width or height")
            report.skipped.setdefault("with a zero or negative width or height", []).append(aid)
            continue
        x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)
        if x1 <= x0 or y1 <= y0:
            _bad(policy, file, ann, f"bbox {bbox} lies outside its {width:g}x{height:g} image")
            report.skipped.setdefault("outside their image", []).append(aid)
            continue
        out = dict(ann)
        if (x0, y0, x1, y1) != (x, y, x + w, y + h):
            if max(x0 - x, y0 - y, x + w - x1, y + h - y1) > CLIP_TOLERANCE:
                _bad(policy, file, ann, f"bbox {bbox} extends past its {width:g}x{height:g} image")
                report.clipped.append(aid)
            out["bbox"] = [x0, y0, x1 - x0, y1 - y0]
        out.setdefault("area", out["bbox"][2] * out["bbox"][3])
        out.setdefault("iscrowd", 0)
        report.crowd += int(bool(out["iscrowd"]))
        kept.append(out)
    report.kept = len(kept)
    return {**data, "annotations": kept}, report


class CocoDetection(Dataset[tuple[torch.Tensor, Target]]):
    """A COCO instances dataset: ``(image, target)`` pairs for torchvision detectors.

    ``image`` is a float tensor in [0, 1] (C, H, W). ``target`` holds
    ``boxes`` (XYXY, a :class:`tv_tensors.BoundingBoxes`), ``labels``
    (1..K, 0 is the background of two-stage detectors) and ``image_id``.
    Category ids of the file map to labels in sorted order
    (``label_to_cat``), so COCO's gaps in ids (1..90 for 80 classes) cost nothing.

    Args:
        images_dir: folder the ``file_name`` of each image is relative to.
        ann_file: the instances JSON.
        transforms: a v2 transform of ``(image, target)``.
        bad_annotations: ``"skip"`` (counted, one warning) or ``"error"``.
        cache_images: keep decoded images in memory after their first read
            (for small sets such as shapes; each loader worker has its own cache).
    """

    def __init__(
        self,
        images_dir: str | os.PathLike[str],
        ann_file: str | os.PathLike[str],
        transforms: Any = None,
        *,
        bad_annotations: str = "skip",
        cache_images: bool = False,
    ) -> None:
        self.images_dir = Path(images_dir)
        self.ann_file = str(ann_file)
        if not self.images_dir.is_dir():
            raise DataError(
                f"image folder {str(self.images_dir)!r} does not exist", file=self.ann_file
            )
        raw = load_coco(ann_file).dataset
        checked, self.report = check_annotations(
            raw, file=self.ann_file, images_dir=self.images_dir, policy=bad_annotations
        )
        message = self.report.message(self.ann_file)
        if message:
            warnings.warn(message, DataWarning, stacklevel=2)
        #: Ground truth for COCOeval: the checked annotations, crowd regions included.
        self.coco = coco_from_dict(checked)
        self.cat_ids = sorted(self.coco.getCatIds())
        self.cat_to_label = {c: i + 1 for i, c in enumerate(self.cat_ids)}
        self.label_to_cat = {i + 1: c for i, c in enumerate(self.cat_ids)}
        self.class_names = [self.coco.cats[c]["name"] for c in self.cat_ids]
        self.ids = sorted(self.coco.imgs)
        self.transforms = transforms
        self._targets = {i: self._target_arrays(i) for i in self.ids}
        self._cache: dict[int, tv_tensors.Image] | None = {} if cache_images else None

    def _target_arrays(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        anns = [a for a in self.coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        boxes = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        labels = np.array([self.cat_to_label[a["category_id"]] for a in anns], dtype=np.int64)
        return boxes, labels

    @property
    def num_classes(self) -> int:
        return len(self.cat_ids)

    def __len__(self) -> int:
        return len(self.ids)

    def read_image(self, image_id: int) -> tv_tensors.Image:
        """The image file of ``image_id`` as an RGB uint8 tensor, checked against its recorded size."""
        info = self.coco.imgs[image_id]
        path = self.images_dir / info["file_name"]
        try:
            with Image.open(path) as pil:
                image = tv_tensors.Image(TF.pil_to_tensor(pil.convert("RGB")))
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(
                f"image id {image_id}: cannot read {str(path)!r} ({exc})", file=self.ann_file
            ) from None
        h, w = image.shape[-2:]
        if (w, h) != (int(info["width"]), int(info["height"])):
            raise DataError(
                f"image id {image_id}: {str(path)!r} is {w}x{h} but the file says "
                f"{info['width']}x{info['height']}",
                file=self.ann_file,
            )
        return image

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        image_id = self.ids[index]
        image = self._cache.get(image_id) if self._cache is not None else None
        if image is None:
            image = self.read_image(image_id)
            if self._cache is not None:
                self._cache[image_id] = image
        h, w = image.shape[-2:]
        boxes, labels = self._targets[image_id]
        target: Target = {
            "boxes": tv_tensors.BoundingBoxes(
                torch.from_numpy(boxes.copy()),
                format=tv_tensors.BoundingBoxFormat.XYXY,
                canvas_size=(h, w),
            ),
            "labels": torch.from_numpy(labels.copy()),
            "image_id": image_id,
        }
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def detection_transforms(
    *,
    train: bool,
    min_size: Sequence[int] | None = None,
    max_size: int | None = None,
    hflip: bool = False,
) -> v2.Compose:
    """torchvision v2 transforms that keep boxes in step with the image.

    Training draws the shorter side from ``min_size`` (capped by ``max_size``)
    and flips; evaluation leaves the image at its size, because the detector
    resizes it and maps its boxes back to the original image itself.
    """
    ops: list[Any] = []
    if train and min_size:
        ops.append(v2.RandomShortestSize(list(min_size), max_size=max_size, antialias=True))
    if train and hflip:
        ops.append(v2.RandomHorizontalFlip())
    ops.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(ops)


def collate(
    batch: Sequence[tuple[torch.Tensor, Target]],
) -> tuple[list[torch.Tensor], list[Target]]:
    """Images of different sizes cannot be stacked: a batch is a list of images and a list of targets."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)
