"""The shapes dataset: a synthetic COCO-format detection set generated from a seed.

Each image has 1-4 coloured squares, circles and triangles on a gradient
background, some overlapping. Annotations are what COCO itself stores: the
box, area and mask (RLE) of the *visible* pixels of each shape, so the COCO
loader and COCOeval read it like any other instances file. Shape colours are
saturated (one channel below 40 or above 215) and background pixels are not,
so a shape's pixels can be found again exactly by colour.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from tunekit.errors import DataError

from ._spec import ShapesSpec

CATEGORIES = [
    {"id": 1, "name": "square", "supercategory": "shape"},
    {"id": 2, "name": "circle", "supercategory": "shape"},
    {"id": 3, "name": "triangle", "supercategory": "shape"},
]

# Saturated colours: each has a channel outside [40, 215], where no background pixel lies.
PALETTE = [
    (230, 25, 25),
    (25, 200, 40),
    (30, 60, 235),
    (245, 220, 20),
    (220, 30, 220),
    (20, 220, 230),
    (250, 140, 10),
    (250, 250, 250),
    (10, 10, 10),
]
_BG_LOW, _BG_HIGH = 40, 215

# A shape is kept only if this much of it stays visible under the ones drawn later.
MIN_VISIBLE = 0.5

#: Folder and annotation-file names of each split: tunekit's own, or COCO 2017's
#: (``train2017/``, ``annotations/instances_train2017.json``), which the ``coco`` data
#: builder reads, so a study's COCO path runs on a machine without COCO.
LAYOUTS = {
    "shapes": {"train": "train", "val": "val"},
    "coco": {"train": "train2017", "val": "val2017"},
}


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    # A linear gradient between two muted colours in a random direction, plus light noise.
    c0 = rng.integers(_BG_LOW + 10, _BG_HIGH - 10, 3).astype(np.float32)
    c1 = rng.integers(_BG_LOW + 10, _BG_HIGH - 10, 3).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    t = (np.cos(angle) * xx + np.sin(angle) * yy + 1.0) / 2.0
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    img += rng.normal(0.0, 4.0, img.shape).astype(np.float32)
    return np.clip(np.round(img), _BG_LOW, _BG_HIGH).astype(np.uint8)


def _shape_mask(
    kind: int, size: int, cx: float, cy: float, side: float, angle: float
) -> np.ndarray:
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    h = side / 2
    if kind == 1:  # square
        draw.rectangle([round(cx - h), round(cy - h), round(cx + h) - 1, round(cy + h) - 1], fill=1)
    elif kind == 2:  # circle
        draw.ellipse([round(cx - h), round(cy - h), round(cx + h) - 1, round(cy + h) - 1], fill=1)
    else:  # triangle, equilateral, rotated
        pts = [
            (cx + h * np.cos(angle + k * 2 * np.pi / 3), cy + h * np.sin(angle + k * 2 * np.pi / 3))
            for k in range(3)
        ]
        draw.polygon(pts, fill=1)
    return np.asarray(canvas, dtype=bool)


def _render(rng: np.random.Generator, spec: ShapesSpec) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One image and its annotations (without ids)."""
    size = spec.size
    img = _background(rng, size)
    n = int(rng.integers(1, 5))
    colours = rng.choice(len(PALETTE), size=n, replace=False)
    owner = np.zeros((size, size), dtype=np.int16)  # which shape each pixel shows (0: none)
    full: list[np.ndarray] = []
    kinds: list[int] = []
    for i in range(n):
        for _attempt in range(10):
            kind = int(rng.integers(1, 4))
            side = rng.uniform(spec.min_frac, spec.max_frac) * size
            cx = rng.uniform(side / 2, size - side / 2)
            cy = rng.uniform(side / 2, size - side / 2)
            m = _shape_mask(kind, size, cx, cy, side, rng.uniform(0, 2 * np.pi))
            if m.sum() < 4:
                continue
            trial = owner.copy()
            trial[m] = i + 1
            # Every shape drawn so far (and this one) must stay mostly visible.
            ok = all(
                (trial == j + 1).sum() >= MIN_VISIBLE * full_j.sum()
                for j, full_j in enumerate([*full, m])
            )
            if ok:
                owner = trial
                full.append(m)
                kinds.append(kind)
                break
        else:
            full.append(np.zeros((size, size), dtype=bool))
            kinds.append(0)  # could not place it: left out
    anns = []
    for i, kind in enumerate(kinds):
        if kind == 0:
            continue
        visible = owner == i + 1
        img[visible] = PALETTE[int(colours[i])]
        ys, xs = np.nonzero(visible)
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        rle = mask_utils.encode(np.asfortranarray(visible.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        anns.append(
            {
                "category_id": kind,
                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                "area": float(visible.sum()),
                "segmentation": rle,
                "iscrowd": 0,
                "color": list(PALETTE[int(colours[i])]),
            }
        )
    return img, anns


def _write_split(
    out: Path, split: str, count: int, spec: ShapesSpec, split_seed: int, layout: str
) -> None:
    rng = np.random.default_rng([spec.seed, split_seed])
    name = LAYOUTS[layout][split]
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for idx in range(count):
        img, anns = _render(rng, spec)
        file_name = f"{idx:06d}.png"
        Image.fromarray(img).save(folder / file_name, optimize=False)
        image_id = idx + 1
        images.append(
            {"id": image_id, "file_name": file_name, "width": spec.size, "height": spec.size}
        )
        for a in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **a})
    data = {
        "info": {"description": f"tunekit shapes ({split})", "version": "1", "spec": asdict(spec)},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    (out / "annotations").mkdir(exist_ok=True)
    (out / "annotations" / f"instances_{name}.json").write_text(json.dumps(data))


def shapes_complete(root: Path, layout: str = "shapes") -> bool:
    return all(
        (root / "annotations" / f"instances_{s}.json").is_file() for s in LAYOUTS[layout].values()
    )


def generate_shapes(
    out: str | os.PathLike[str],
    spec: ShapesSpec | None = None,
    *,
    overwrite: bool = False,
    layout: str = "shapes",
) -> Path:
    """Writes a shapes dataset (``train/``, ``val/``, ``annotations/instances_{train,val}.json``).

    ``layout="coco"`` names the splits as COCO 2017 does (``train2017/``,
    ``annotations/instances_train2017.json``, ...), for the ``coco`` data builder.

    Generation happens in a temporary folder beside ``out`` that is renamed into
    place at the end, so a crash leaves nothing half-written and two processes
    (DDP ranks) generating the same folder at once both end up reading one
    complete copy.

    Example:
        >>> generate_shapes("/tmp/shapes", ShapesSpec(train=100, val=20))  # doctest: +SKIP
    """
    spec = spec or ShapesSpec()
    spec.check()
    out = Path(out).expanduser()
    if out.exists() and not overwrite:
        if shapes_complete(out, layout):
            return out
        if any(out.iterdir()):
            raise DataError(
                f"{str(out)!r} exists and is not a complete shapes dataset; "
                "remove it, or choose another folder",
                field="--out",
            )
        with contextlib.suppress(OSError):
            out.rmdir()  # an empty folder: replaced by the renamed one below
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    old: Path | None = None
    try:
        _write_split(tmp, "train", spec.train, spec, 0, layout)
        _write_split(tmp, "val", spec.val, spec, 1, layout)
        (tmp / "annotations" / "spec.json").write_text(json.dumps(asdict(spec), indent=2))
        if overwrite and out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / "data")
        try:
            os.rename(tmp, out)
        except OSError:
            # Another process renamed its copy first; theirs holds the same files.
            if not shapes_complete(out, layout):
                raise
    finally:
        for leftover in (tmp, old):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
    return out


def default_cache_dir() -> Path:
    """``$TUNEKIT_CACHE`` or ``$XDG_CACHE_HOME/tunekit`` or ``~/.cache/tunekit``."""
    if os.environ.get("TUNEKIT_CACHE"):
        return Path(os.environ["TUNEKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tunekit"


def ensure_shapes(root: str | os.PathLike[str] | None, spec: ShapesSpec) -> Path:
    """The folder of a shapes dataset for ``spec``, generated on first use.

    With ``root`` None the dataset lives in the cache, in a folder named by the
    spec's hash, so recipes with different specs never share files.
    """
    path = Path(root).expanduser() if root else default_cache_dir() / f"shapes-{spec.digest()}"
    if not shapes_complete(path):
        path = generate_shapes(path, spec)
    made = path / "annotations" / "spec.json"
    if made.is_file():
        found = json.loads(made.read_text())
        if found != asdict(spec):
            diff = ", ".join(
                f"{k}={found.get(k)!r} (recipe: {v!r})"
                for k, v in asdict(spec).items()
                if found.get(k) != v
            )
            raise DataError(
                f"{str(path)!r} holds a shapes dataset made with other settings: {diff}; "
                "point data.root to another folder, or remove this one to regenerate it",
                field="data.root",
            )
    return path
