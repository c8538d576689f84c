"""Detection datasets by name (``shapes``, ``coco``) and the shapes crops a backbone is pretrained on."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from tunekit.config import DataConfig
from tunekit.core import DistInfo, broadcast_object
from tunekit.data import DataBundle, subset_every
from tunekit.errors import ConfigError, DataError, unknown_choice
from tunekit.shapes import ShapesSpec, ensure_shapes

from ._coco import CocoDetection, collate, detection_transforms
from ._models import IMAGENET_MEAN, IMAGENET_STD

_SHAPES_KEYS = tuple(f.name for f in fields(ShapesSpec))
_COCO_KEYS = ("train_images", "val_images", "train_annotations", "val_annotations")


def _check_kwargs(cfg: DataConfig, allowed: tuple[str, ...], file: str | None) -> None:
    for key in cfg.kwargs:
        if key not in allowed:
            raise ConfigError(
                f"unknown key {key!r} for dataset {cfg.name!r}; allowed: {', '.join(allowed)}",
                file=file,
                field=f"data.kwargs.{key}",
            )


def train_max_size(cfg: DataConfig) -> int:
    """The cap on the longer side: ``augment.max_size``, else the COCO ratio 1333/800 of ``image_size``."""
    return cfg.augment.max_size or math.ceil(cfg.image_size * 1333 / 800)


def _pair(
    cfg: DataConfig,
    root: Path,
    images: tuple[str, str],
    anns: tuple[str, str],
    file: str | None,
    *,
    cache_images: bool = False,
) -> DataBundle:
    policy = str(cfg.kwargs.get("bad_annotations", "skip"))
    max_size = train_max_size(cfg)
    train_tf = detection_transforms(
        train=True,
        min_size=cfg.augment.min_size or [cfg.image_size],
        max_size=max_size,
        hflip=cfg.augment.hflip,
    )
    train = CocoDetection(
        root / images[0],
        root / anns[0],
        train_tf,
        bad_annotations=policy,
        cache_images=cache_images,
    )
    val = CocoDetection(
        root / images[1],
        root / anns[1],
        detection_transforms(train=False),
        bad_annotations=policy,
        cache_images=cache_images,
    )
    if train.cat_ids != val.cat_ids:
        raise DataError(
            f"train and val categories differ ({train.cat_ids} vs {val.cat_ids})",
            file=str(root / anns[1]),
        )
    return DataBundle(
        train=train,
        val=val,
        num_classes=train.num_classes,
        in_channels=3,
        collate_fn=collate,
        class_names=train.class_names,
        extra={"root": str(root), "max_size": max_size},
    )


def shapes_spec(cfg: DataConfig, file: str | None = None) -> ShapesSpec:
    """The shapes spec of a recipe's ``data.kwargs`` (image side defaults to ``data.image_size``)."""
    _check_kwargs(cfg, (*_SHAPES_KEYS, "bad_annotations"), file)
    values = {k: v for k, v in cfg.kwargs.items() if k in _SHAPES_KEYS}
    values.setdefault("size", cfg.image_size)
    try:
        spec = ShapesSpec(**values)
        spec.check()
    except DataError as exc:
        raise ConfigError(exc.message, file=file, field=f"data.kwargs.{exc.field}") from None
    except TypeError as exc:
        raise ConfigError(str(exc), file=file, field="data.kwargs") from None
    return spec


def shapes_data(cfg: DataConfig, dist: DistInfo, file: str | None = None) -> DataBundle:
    """The synthetic shapes set, generated into ``data.root`` (or the cache) on first use."""
    spec = shapes_spec(cfg, file)
    # Rank 0 generates while the others wait (and hear of its failure rather than
    # hang); the rename at its end is atomic anyway, so separate jobs sharing a
    # cache cannot see half a dataset either.
    if dist.distributed:
        failure: str | None = None
        if dist.is_main:
            try:
                ensure_shapes(cfg.root, spec)
            except DataError as exc:
                failure = str(exc)
                broadcast_object(failure)
                raise
        failure = broadcast_object(failure)
        if failure is not None:
            raise DataError(failure)
    root = ensure_shapes(cfg.root, spec)
    return _pair(
        cfg,
        root,
        ("train", "val"),
        ("annotations/instances_train.json", "annotations/instances_val.json"),
        file,
        cache_images=True,  # a few MB of small images
    )


def coco_data(cfg: DataConfig, dist: DistInfo, file: str | None = None) -> DataBundle:
    """COCO (or any dataset in its layout) under a local ``data.root``.

    Layout, overridable by ``data.kwargs``: ``train2017/``, ``val2017/``,
    ``annotations/instances_train2017.json``, ``annotations/instances_val2017.json``.
    """
    _check_kwargs(cfg, (*_COCO_KEYS, "bad_annotations"), file)
    k = cfg.kwargs
    images = (str(k.get("train_images", "train2017")), str(k.get("val_images", "val2017")))
    anns = (
        str(k.get("train_annotations", "annotations/instances_train2017.json")),
        str(k.get("val_annotations", "annotations/instances_val2017.json")),
    )
    layout = f"{images[0]}/, {images[1]}/, {anns[0]} and {anns[1]}"
    if not cfg.root:
        raise DataError(
            f"the coco dataset needs a local root holding {layout}; "
            "point to it with --set data.root=/path/to/coco",
            file=file,
            field="data.root",
        )
    root = Path(cfg.root).expanduser()
    missing = [p for p in (*images, *anns) if not (root / p).exists()]
    if missing:
        raise DataError(
            f"expected COCO at {str(root)!r} ({layout}) but {str(root / missing[0])!r} does not exist; "
            "point to it with --set data.root=/path/to/coco",
            file=file,
            field="data.root",
        )
    return _pair(cfg, root, images, anns, file)


#: Detection datasets by name: name -> builder(DataConfig, DistInfo, file) -> DataBundle.
DETECTION_DATASETS: dict[str, Callable[[DataConfig, DistInfo, str | None], DataBundle]] = {
    "shapes": shapes_data,
    "coco": coco_data,
}


def build_detection_data(
    cfg: DataConfig, dist: DistInfo | None = None, *, file: str | None = None
) -> DataBundle:
    """The detection dataset a recipe names (``data.name``), with its subsets applied."""
    dist = dist or DistInfo()
    if cfg.builder:
        raise ConfigError(
            "detection recipes read COCO-format data: use data.name coco (with data.root) or shapes",
            file=file,
            field="data.builder",
        )
    if cfg.name not in DETECTION_DATASETS:
        raise unknown_choice(
            "detection dataset", cfg.name, DETECTION_DATASETS, file=file, field="data.name"
        )
    bundle = DETECTION_DATASETS[cfg.name](cfg, dist, file)
    if cfg.train_subset:
        bundle.train = subset_every(bundle.train, cfg.train_subset)
    if cfg.val_subset:
        bundle.val = subset_every(bundle.val, cfg.val_subset)
    return bundle


class ShapeCrops(Dataset[tuple[torch.Tensor, int]]):
    """One square crop per annotated object of a COCO dataset, labelled by category (0..K-1).

    The crops are cut once (uint8, in memory) and transformed on access.
    """

    def __init__(
        self, source: CocoDetection, crop_size: int, context: float, transform: Any
    ) -> None:
        crops, labels = [], []
        for image_id in source.ids:
            image = source.read_image(image_id)
            for ann in source.coco.imgToAnns.get(image_id, []):
                if ann.get("iscrowd", 0):
                    continue
                x, y, w, h = ann["bbox"]
                side = max(w, h) * (1 + 2 * context)
                top, left = round(y + h / 2 - side / 2), round(x + w / 2 - side / 2)
                crop = TF.resized_crop(
                    image,
                    top,
                    left,
                    round(side),
                    round(side),
                    [crop_size, crop_size],
                    antialias=True,
                )
                crops.append(crop)
                labels.append(source.cat_to_label[ann["category_id"]] - 1)
        if not crops:
            raise DataError("no annotated objects to crop", file=source.ann_file)
        self.images = torch.stack(crops)
        self.labels = torch.tensor(labels)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = tv_tensors.Image(self.images[i])
        return self.transform(x).as_subclass(torch.Tensor), int(self.labels[i])


def shapes_crops(
    root: str | None = None,
    crop_size: int = 32,
    context: float = 0.15,
    hflip: bool = True,
    **spec: Any,
) -> DataBundle:
    """A classification set of the shapes objects (for pretraining a detector's backbone).

    ``spec`` are the shapes parameters (train, val, size, seed, ...); with the
    same ones as a detection recipe, both read the same generated images.
    Use it through a recipe's ``data.builder: tunekit.detection:shapes_crops``.
    """
    unknown = sorted(set(spec) - set(_SHAPES_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} for shapes_crops; allowed: root, crop_size, context, hflip, "
            + ", ".join(_SHAPES_KEYS),
            field=f"data.kwargs.{unknown[0]}",
        )
    s = ShapesSpec(**spec)
    s.check()
    path = ensure_shapes(root, s)
    norm = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train_tf = v2.Compose([*([v2.RandomHorizontalFlip()] if hflip else []), *norm])
    sets = []
    for split, tf in (("train", train_tf), ("val", v2.Compose(norm))):
        src = CocoDetection(path / split, path / "annotations" / f"instances_{split}.json")
        sets.append(ShapeCrops(src, crop_size, context, tf))
    return DataBundle(
        train=sets[0],
        val=sets[1],
        num_classes=src.num_classes,
        in_channels=3,
        class_names=src.class_names,
    )
