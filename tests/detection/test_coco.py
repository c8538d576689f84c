"""The COCO loader: bad annotations are an error or skipped and counted, never trained on as they are."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from tunekit.detection import CocoDetection, DataWarning, collate, detection_transforms
from tunekit.errors import DataError

Corrupt = Callable[[Callable[[dict[str, Any]], None]], Path]


def _open(ann: Path, policy: str = "skip") -> CocoDetection:
    return CocoDetection(ann.parent.parent / "val", ann, bad_annotations=policy)


def _set_bbox(index: int, bbox: list[float]) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["annotations"][index]["bbox"] = bbox

    return edit


@pytest.mark.parametrize(
    ("bbox", "problem"),
    [
        ([10.0, 10.0, -5.0, 8.0], "zero or negative width or height"),
        ([10.0, 10.0, 8.0, 0.0], "zero or negative width or height"),
        ([200.0, 10.0, 8.0, 8.0], "lies outside its 48x48 image"),
        ([30.0, 30.0, 40.0, 8.0], "extends past its 48x48 image"),
    ],
)
def test_a_bad_box_is_an_error_naming_file_and_annotation_id(
    corrupt: Corrupt, bbox: list[float], problem: str
) -> None:
    ann = corrupt(_set_bbox(2, bbox))
    bad_id = json.loads(ann.read_text())["annotations"][2]["id"]
    with pytest.raises(DataError) as err:
        _open(ann, "error")
    msg = str(err.value)
    assert str(ann) in msg and f"annotation id {bad_id} " in msg and problem in msg
    assert "bad_annotations=skip" in msg  # and how to go on


def test_bad_boxes_are_skipped_or_clipped_and_counted_in_one_warning(corrupt: Corrupt) -> None:
    def edit(data: dict[str, Any]) -> None:
        anns = data["annotations"]
        anns[0]["bbox"] = [10.0, 10.0, -5.0, 8.0]  # negative width: skipped
        anns[1]["bbox"] = [60.0, 60.0, 5.0, 5.0]  # outside the 48x48 image: skipped
        anns[2]["bbox"] = [30.0, 30.0, 40.0, 8.0]  # pokes out: clipped to the image

    ann = corrupt(edit)
    data = json.loads(ann.read_text())
    ids = [a["id"] for a in data["annotations"][:3]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = _open(ann)
    mine = [w for w in caught if issubclass(w.category, DataWarning)]
    assert len(mine) == 1
    text = str(mine[0].message)
    assert f"skipped 2 of {len(data['annotations'])} annotations" in text and f"id {ids[0]}" in text
    assert "clipped 1 boxes" in text and str(ann) in text
    assert ds.report.n_skipped == 2 and ds.report.clipped == [ids[2]]
    # The skipped ones are gone from training targets and from the evaluation ground truth.
    assert ids[0] not in ds.coco.anns and ids[1] not in ds.coco.anns
    assert ds.coco.anns[ids[2]]["bbox"] == [30.0, 30.0, 18.0, 8.0]
    total_boxes = sum(len(ds[i][1]["boxes"]) for i in range(len(ds)))
    assert total_boxes == len(data["annotations"]) - 2
    for i in range(len(ds)):
        boxes = ds[i][1]["boxes"].as_subclass(torch.Tensor)
        assert (boxes[:, 2:] > boxes[:, :2]).all() and (boxes >= 0).all() and (boxes <= 48).all()


def test_unknown_category_is_always_an_error(corrupt: Corrupt) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["annotations"][3]["category_id"] = 99

    ann = corrupt(edit)
    bad_id = json.loads(ann.read_text())["annotations"][3]["id"]
    with pytest.raises(
        DataError, match=rf"annotation id {bad_id} .*unknown category id 99.*\[1, 2, 3\]"
    ):
        _open(ann)


def test_missing_image_file_is_an_error_naming_it(corrupt: Corrupt) -> None:
    ann = corrupt(lambda data: None)
    (ann.parent.parent / "val" / "000004.png").unlink()
    with pytest.raises(
        DataError, match=r"image id 5: image file .*000004\.png' does not exist"
    ) as err:
        _open(ann)
    assert str(ann) in str(err.value)


def test_malformed_files_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "val").mkdir()
    bad = tmp_path / "ann" / "x.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not a JSON file"):
        CocoDetection(tmp_path / "val", bad)
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match="needs the keys 'images', 'annotations' and 'categories'"):
        CocoDetection(tmp_path / "val", bad)
    with pytest.raises(DataError, match="no such annotations file"):
        CocoDetection(tmp_path / "val", tmp_path / "nope.json")


def test_crowd_regions_are_kept_for_eval_but_not_trained_and_empty_images_stay(
    corrupt: Corrupt,
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["annotations"][0]["iscrowd"] = 1
        first_image = data["images"][0]["id"]
        data["annotations"] = [
            a for a in data["annotations"] if a["image_id"] != data["images"][1]["id"]
        ]
        data["annotations"][0]["image_id"] = first_image

    ann = corrupt(edit)
    data = json.loads(ann.read_text())
    ds = _open(ann)
    assert len(ds) == len(data["images"])  # the image left without annotations is still there
    crowd = data["annotations"][0]
    assert ds.coco.anns[crowd["id"]]["iscrowd"] == 1 and ds.report.crowd == 1
    index = ds.ids.index(crowd["image_id"])
    n_image_anns = sum(a["image_id"] == crowd["image_id"] for a in data["annotations"])
    assert len(ds[index][1]["boxes"]) == n_image_anns - 1
    empty = ds[ds.ids.index(data["images"][1]["id"])][1]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)


def test_training_transforms_resize_within_the_range_and_collate_keeps_lists(
    small_shapes: Path,
) -> None:
    tf = detection_transforms(train=True, min_size=[32, 40], max_size=60, hflip=True)
    ds = CocoDetection(
        small_shapes / "val", small_shapes / "annotations" / "instances_val.json", tf
    )
    plain = CocoDetection(small_shapes / "val", small_shapes / "annotations" / "instances_val.json")
    torch.manual_seed(0)
    images, targets = collate([ds[i] for i in range(6)])
    assert len(images) == len(targets) == 6
    for i, (img, t) in enumerate(zip(images, targets)):
        assert img.dtype == torch.float32 and float(img.min()) >= 0 and float(img.max()) <= 1
        side = min(img.shape[-2:])
        assert side in (32, 40)
        scale = side / 48
        raw = plain[i][1]["boxes"].as_subclass(torch.Tensor)
        areas = (t["boxes"][:, 2:] - t["boxes"][:, :2]).prod(dim=1)
        assert torch.allclose(areas, (raw[:, 2:] - raw[:, :2]).prod(dim=1) * scale**2, rtol=1e-4)
        assert t["image_id"] == plain.ids[i]
