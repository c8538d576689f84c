"""The shapes generator: deterministic, valid COCO, and boxes where the pixels are."""

from __future__ import annotations

import hashlib
import json
import math
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools.coco import COCO
from torchvision.ops import box_iou

from tunekit.config import load_recipe
from tunekit.detection import CocoDetection, detection_transforms
from tunekit.run import train
from tunekit.shapes import ShapesSpec, ensure_shapes, generate_shapes

REPO = Path(__file__).resolve().parents[2]


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_files_other_seed_other_files(small_shapes: Path, tmp_path: Path) -> None:
    spec = ShapesSpec(**json.loads((small_shapes / "annotations" / "spec.json").read_text()))
    again = generate_shapes(tmp_path / "again", spec)
    other = generate_shapes(
        tmp_path / "other", ShapesSpec(train=40, val=12, size=48, seed=spec.seed + 1)
    )
    assert _digest(again) == _digest(small_shapes)
    assert _digest(other) != _digest(small_shapes)


def test_json_loads_in_pycocotools_with_sane_content(small_shapes: Path) -> None:
    for split, n in (("train", 40), ("val", 12)):
        coco = COCO(str(small_shapes / "annotations" / f"instances_{split}.json"))
        assert len(coco.getImgIds()) == n
        assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == [
            "circle",
            "square",
            "triangle",
        ]
        per_image = [len(coco.getAnnIds(imgIds=[i])) for i in coco.getImgIds()]
        assert min(per_image) >= 1 and max(per_image) <= 4
        # Every category occurs, and some images hold more than one shape.
        assert {a["category_id"] for a in coco.anns.values()} == {1, 2, 3} or split == "val"
        assert max(per_image) >= 2
        for ann in coco.anns.values():
            mask = coco.annToMask(ann)
            assert mask.sum() == ann["area"] > 0


def test_boxes_match_the_shape_pixels(small_shapes: Path) -> None:
    """Each box is exactly the extent of the pixels painted in its shape's colour."""
    coco = COCO(str(small_shapes / "annotations" / "instances_train.json"))
    overlapping = 0
    for image_id, info in coco.imgs.items():
        pixels = np.asarray(Image.open(small_shapes / "train" / info["file_name"]).convert("RGB"))
        anns = coco.imgToAnns[image_id]
        for ann in anns:
            hit = np.all(pixels == np.array(ann["color"], dtype=np.uint8), axis=-1)
            ys, xs = np.nonzero(hit)
            box = [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
            assert box == ann["bbox"], (image_id, ann["id"])
            assert hit.sum() == ann["area"]
        boxes = torch.tensor([a["bbox"] for a in anns])
        boxes[:, 2:] += boxes[:, :2]
        iou = box_iou(boxes, boxes) - torch.eye(len(anns))
        overlapping += int((iou > 0).any())
    assert overlapping > 0  # the set has overlapping shapes


def test_loader_reads_the_boxes_back_and_a_flip_moves_them_with_the_pixels(
    small_shapes: Path,
) -> None:
    ds = CocoDetection(
        small_shapes / "train", small_shapes / "annotations" / "instances_train.json"
    )
    flip = CocoDetection(
        small_shapes / "train",
        small_shapes / "annotations" / "instances_train.json",
        detection_transforms(train=True, hflip=True),
    )
    torch.manual_seed(0)
    flipped_seen = 0
    for i in range(10):
        image, target = ds[i]
        coco_anns = ds.coco.imgToAnns[target["image_id"]]
        expected = torch.tensor(
            [
                [
                    a["bbox"][0],
                    a["bbox"][1],
                    a["bbox"][0] + a["bbox"][2],
                    a["bbox"][1] + a["bbox"][3],
                ]
                for a in coco_anns
            ]
        )
        assert torch.equal(target["boxes"].as_subclass(torch.Tensor), expected)
        assert target["labels"].tolist() == [
            a["category_id"] for a in coco_anns
        ]  # shapes ids are 1..3 already
        fimage, ftarget = flip[i]
        was_flipped = not torch.equal((fimage * 255).round().to(torch.uint8), image)
        flipped_seen += was_flipped
        for box, ann in zip(ftarget["boxes"].as_subclass(torch.Tensor), coco_anns):
            x0, y0, x1, y1 = (int(v) for v in box.round())
            # The pixels in the box are the shape's colour at its outermost columns and rows.
            colour = torch.tensor(ann["color"], dtype=torch.uint8)[:, None, None]
            hit = ((fimage * 255).round().to(torch.uint8) == colour).all(dim=0)
            ys, xs = torch.nonzero(hit, as_tuple=True)
            assert (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) == (
                x0,
                y0,
                x1,
                y1,
            )
    assert 0 < flipped_seen < 10


def test_cache_generates_once_atomically_even_when_raced(tmp_path: Path) -> None:
    spec = ShapesSpec(train=6, val=3, size=32, seed=1)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_shapes(tmp_path / "c", spec)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and all(r == tmp_path / "c" for r in results)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temporary folders left behind
    assert json.loads((tmp_path / "c" / "annotations" / "spec.json").read_text())["train"] == 6
    assert len(list((tmp_path / "c" / "train").glob("*.png"))) == 6


def test_coco_layout_is_read_by_the_coco_builder(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """``tunekit data shapes --layout coco`` writes COCO 2017's names; data.name=coco trains on it."""
    root = tmp_path / "coco"
    done = cli(
        "data",
        "shapes",
        "--out",
        str(root),
        "--train",
        "16",
        "--val",
        "6",
        "--size",
        "48",
        "--layout",
        "coco",
    )
    assert done.returncode == 0, done.stderr
    for name in ("train2017", "val2017"):
        assert len(list((root / name).glob("*.png"))) == {"train2017": 16, "val2017": 6}[name]
        assert (root / "annotations" / f"instances_{name}.json").is_file()
    recipe = load_recipe(
        REPO / "recipes" / "shapes_fcos.yaml",
        [
            "data.name=coco",
            f"data.root={root}",
            "data.kwargs={}",
            "data.image_size=48",
            "model.width=8",
            "train.epochs=1",
            "train.batch_size=8",
            "diagnostics.enabled=false",
            f"output_dir={tmp_path / 'runs'}",
        ],
    )
    summary = train(recipe, out=tmp_path / "run", progress=False)
    assert summary["final"]["val/images"] == 6
    assert math.isfinite(summary["final"]["val/AP"])
