"""``shapes_tags``: weakly labelled images for multi-label pretraining, from the shapes generator.

Each image of the synthetic shapes set (``tunekit.detection``'s generator, the
same files a ``shapes`` detection recipe reads) is labelled only by the tags of
what it shows, derived from its COCO annotations: with ``vocabulary:
shape_color`` (the default) one tag per (colour, shape) pair present, such as
"red circle" (9 colours x 3 shapes = 27 tags); with ``vocabulary: shape`` the
three shape classes. Three things make the labels weak, each set in
``data.kwargs`` and drawn from the dataset's seed, so a seed always gives the
same images and tags:

1. **Long-tailed tag frequency** (``zipf``, default 1): the tags are ranked in
   a seeded random order and the images are chosen so that the share of each
   tag among all tags follows a Zipf law, share(rank r) proportional to
   r^-zipf. The generator draws shapes and colours uniformly, so a pool
   ``pool_factor`` times larger than the requested split is generated and
   images are kept from it: each image gets an inclusion probability,
   fitted by iterative proportional fitting (each round multiplies an image's
   weight by the geometric mean of its tags' target/achieved share ratios,
   and probabilities are capped at 1), and the split is drawn by systematic
   sampling with those probabilities. Images hold 1 to 4 shapes, so the fit
   is as close as co-occurring tags allow; the achieved shares are in
   ``bundle.extra["tag_share"]``. ``zipf: 0`` keeps the generator's own
   (about uniform) frequencies and generates no pool.
2. **Tag noise** on the training split (``p_drop``, ``p_add``): each true tag
   of an image is dropped with probability ``p_drop``, then with probability
   ``p_add`` one wrong tag (uniform over the tags the image does not show) is
   added. The validation split keeps its true tags unless ``noisy_val: true``,
   so validation mAP measures what the images show.
3. Only image-level tags, no boxes or counts.

Example recipe section::

    data:
      name: shapes_tags
      image_size: 64
      kwargs: {train: 3000, val: 600, p_drop: 0.2, p_add: 0.1, zipf: 1.0}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from tunekit.config import DataConfig
from tunekit.errors import ConfigError, DataError

from ._base import DataBundle
from ._classification import IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform

SHAPE_NAMES = ("square", "circle", "triangle")
#: The names of the shapes generator's palette, in its order.
COLOR_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "white", "black")
VOCABULARIES = ("shape_color", "shape")

#: data.kwargs of shapes_tags and their defaults (the shapes keys as the generator's).
DEFAULTS: dict[str, Any] = {
    "train": 2000,
    "val": 400,
    "size": None,  # data.image_size
    "seed": 0,
    "min_frac": 0.18,
    "max_frac": 0.45,
    "vocabulary": "shape_color",
    "p_drop": 0.1,
    "p_add": 0.1,
    "zipf": 1.0,
    "pool_factor": 4.0,
    "noisy_val": False,
}


def tag_names(vocabulary: str) -> list[str]:
    """The tags of a vocabulary, in index order."""
    if vocabulary == "shape":
        return list(SHAPE_NAMES)
    if vocabulary == "shape_color":
        return [f"{c} {s}" for s in SHAPE_NAMES for c in COLOR_NAMES]
    raise ValueError(f"unknown vocabulary {vocabulary!r}; choose one of {', '.join(VOCABULARIES)}")


def annotation_tag(ann: dict[str, Any], vocabulary: str) -> int:
    """The tag index of one shapes annotation (its category, and its colour for shape_color)."""
    from tunekit.shapes import PALETTE

    shape = int(ann["category_id"]) - 1
    if vocabulary == "shape":
        return shape
    color = PALETTE.index(tuple(ann["color"]))
    return shape * len(COLOR_NAMES) + color


def image_tags(coco: dict[str, Any], vocabulary: str) -> list[frozenset[int]]:
    """The true tags of each image of a COCO-format shapes file, in the file's image order."""
    by_image: dict[int, set[int]] = {img["id"]: set() for img in coco["images"]}
    for ann in coco["annotations"]:
        by_image[ann["image_id"]].add(annotation_tag(ann, vocabulary))
    return [frozenset(by_image[img["id"]]) for img in coco["images"]]


@dataclass
class NoiseCounts:
    """What :func:`add_tag_noise` did: the measured drop and add rates are their ratios."""

    true_tags: int = 0
    dropped: int = 0
    images: int = 0
    added: int = 0

    @property
    def drop_rate(self) -> float:
        return self.dropped / self.true_tags if self.true_tags else 0.0

    @property
    def add_rate(self) -> float:
        return self.added / self.images if self.images else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "true_tags": self.true_tags,
            "dropped": self.dropped,
            "images": self.images,
            "added": self.added,
            "drop_rate": self.drop_rate,
            "add_rate": self.add_rate,
        }


def add_tag_noise(
    tags: list[frozenset[int]],
    num_classes: int,
    p_drop: float,
    p_add: float,
    rng: np.random.Generator,
) -> tuple[list[frozenset[int]], NoiseCounts]:
    """Drops each true tag with probability ``p_drop``; then, with probability ``p_add``,
    adds one wrong tag drawn uniformly from the tags the image does not have.

    The same generator state gives the same noisy tags.
    """
    counts = NoiseCounts(images=len(tags))
    out = []
    for true in tags:
        ordered = sorted(true)
        keep = rng.random(len(ordered)) >= p_drop
        noisy = {t for t, k in zip(ordered, keep, strict=True) if k}
        counts.true_tags += len(ordered)
        counts.dropped += int((~keep).sum())
        absent = [c for c in range(num_classes) if c not in true]
        if rng.random() < p_add and absent:
            noisy.add(absent[int(rng.integers(len(absent)))])
            counts.added += 1
        out.append(frozenset(noisy))
    return out, counts


def zipf_ranks(num_classes: int, seed: int) -> np.ndarray:
    """The rank (1 = most frequent) each tag gets in the long tail, a seeded permutation."""
    return np.random.default_rng([seed, 3]).permutation(num_classes) + 1


def zipf_shares(ranks: np.ndarray, exponent: float) -> np.ndarray:
    """Target share of each tag among all tags: proportional to rank^-exponent."""
    w = ranks.astype(np.float64) ** -exponent
    return w / w.sum()


def _inclusion(weights: np.ndarray, count: int) -> np.ndarray:
    """Probabilities min(1, lam * w) summing to ``count`` (lam by bisection)."""
    lo, hi = 0.0, 1.0
    while np.minimum(1.0, hi * weights).sum() < count:
        hi *= 2.0
        if hi > 1e30:
            break
    for _ in range(100):
        mid = (lo + hi) / 2
        if np.minimum(1.0, mid * weights).sum() < count:
            lo = mid
        else:
            hi = mid
    return np.minimum(1.0, hi * weights)


def long_tail_sample(
    tags: list[frozenset[int]],
    num_classes: int,
    count: int,
    shares: np.ndarray,
    rng: np.random.Generator,
    rounds: int = 60,
) -> np.ndarray:
    """``count`` image indices, chosen so that tag shares come close to ``shares``.

    Iterative proportional fitting of inclusion probabilities, then systematic
    sampling (see the module's docstring). Images without tags are never chosen.
    """
    y = np.zeros((len(tags), num_classes))
    for i, t in enumerate(tags):
        y[i, sorted(t)] = 1.0
    n_tags = y.sum(axis=1)
    usable = n_tags > 0
    if usable.sum() < count:
        raise DataError(
            f"the pool has {int(usable.sum())} tagged images, fewer than the {count} asked for; "
            "raise data.kwargs.pool_factor",
            field="data.kwargs.pool_factor",
        )
    log_w = np.where(usable, 0.0, -np.inf)
    for _ in range(rounds):
        pi = _inclusion(np.exp(log_w - log_w.max()), count)
        achieved = pi @ y
        ratio = np.where(achieved > 0, shares * achieved.sum() / np.maximum(achieved, 1e-300), 1.0)
        step = (y @ np.log(ratio)) / np.maximum(n_tags, 1.0)
        log_w = np.where(usable, log_w + step, -np.inf)
    pi = _inclusion(np.exp(log_w - log_w.max()), count)
    # Systematic sampling in a random order: unit k is taken when a point start + m
    # (m = 0, 1, ...) falls in its slice of the cumulative probabilities.
    order = rng.permutation(len(tags))
    cum = np.cumsum(pi[order])
    start = rng.random()
    taken = np.floor(cum - start) > np.floor(np.concatenate([[0.0], cum[:-1]]) - start)
    chosen = order[taken]
    if len(chosen) != count:  # the sum of pi is count up to rounding
        rest = order[~taken]
        if len(chosen) < count:
            extra = rest[np.argsort(-pi[rest], kind="stable")[: count - len(chosen)]]
            chosen = np.concatenate([chosen, extra])
        else:
            chosen = chosen[np.argsort(-pi[chosen], kind="stable")[:count]]
    return np.sort(chosen)


def multi_hot(tags: list[frozenset[int]], num_classes: int) -> torch.Tensor:
    out = torch.zeros(len(tags), num_classes)
    for i, t in enumerate(tags):
        if t:
            out[i, sorted(t)] = 1.0
    return out


def tag_share(targets: torch.Tensor) -> list[float]:
    """Each tag's share of all tags in a multi-hot matrix."""
    counts = targets.sum(dim=0)
    return (counts / counts.sum().clamp_min(1.0)).tolist()


class TagImages(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """uint8 images (N, C, H, W) in memory with multi-hot float targets (N, num_classes)."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, transform: Any = None) -> None:
        self.images, self.targets, self.transform = images, targets, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = tv_tensors.Image(self.images[i])
        if self.transform is not None:
            x = self.transform(x)
        return x.as_subclass(torch.Tensor), self.targets[i]


def _options(cfg: DataConfig) -> dict[str, Any]:
    unknown = sorted(set(cfg.kwargs) - set(DEFAULTS))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} for dataset 'shapes_tags'; allowed: {', '.join(DEFAULTS)}",
            field=f"data.kwargs.{unknown[0]}",
        )
    o = {**DEFAULTS, **cfg.kwargs}
    if o["size"] is None:
        o["size"] = cfg.image_size

    def fail(key: str, rule: str) -> ConfigError:
        return ConfigError(f"value {o[key]!r} is not allowed: {rule}", field=f"data.kwargs.{key}")

    for key in ("p_drop", "p_add"):
        v = o[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise fail(key, "a probability, from 0 to 1")
    v = o["zipf"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 5.0:
        raise fail("zipf", "the Zipf exponent, from 0 (no long tail) to 5")
    v = o["pool_factor"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1.0 <= v <= 100.0:
        raise fail("pool_factor", "how many times the split the generated pool holds, 1 to 100")
    if o["vocabulary"] not in VOCABULARIES:
        raise fail("vocabulary", f"choose one of {', '.join(VOCABULARIES)}")
    if not isinstance(o["noisy_val"], bool):
        raise fail("noisy_val", "true or false")
    return o


def _pool_spec(o: dict[str, Any]) -> Any:
    from tunekit.shapes import ShapesSpec

    factor = o["pool_factor"] if o["zipf"] > 0 else 1.0
    values = {k: o[k] for k in ("train", "val", "size", "seed", "min_frac", "max_frac")}
    for split in ("train", "val"):
        if isinstance(values[split], int) and not isinstance(values[split], bool):
            values[split] = math.ceil(values[split] * factor)
    spec = ShapesSpec(**values)
    try:
        spec.check()
    except DataError as exc:
        raise ConfigError(exc.message, field=f"data.kwargs.{exc.field}") from None
    return spec


def _read_images(folder: Path, names: list[str]) -> torch.Tensor:
    from PIL import Image

    arrays = []
    for name in names:
        with Image.open(folder / name) as im:
            arrays.append(np.asarray(im.convert("RGB")))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def shapes_tags(cfg: DataConfig) -> DataBundle:
    """The weakly labelled shapes set (see the module's docstring), generated on first use."""
    from tunekit.shapes import ensure_shapes

    o = _options(cfg)
    spec = _pool_spec(o)
    root = ensure_shapes(cfg.root, spec)
    names = tag_names(o["vocabulary"])
    c = len(names)
    shares = zipf_shares(zipf_ranks(c, o["seed"]), o["zipf"])
    sets: dict[str, TagImages] = {}
    extra: dict[str, Any] = {"tag_names": names, "root": str(root), "tag_share": {}, "noise": {}}
    for index, split in enumerate(("train", "val")):
        coco = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
        tags = image_tags(coco, o["vocabulary"])
        count = int(o[split])
        if o["zipf"] > 0:
            rng = np.random.default_rng([o["seed"], index, 2])
            chosen = long_tail_sample(tags, c, count, shares, rng)
        else:
            chosen = np.arange(min(count, len(tags)))
        tags = [tags[i] for i in chosen]
        extra["tag_share"][split] = tag_share(multi_hot(tags, c))
        if split == "train" or o["noisy_val"]:
            rng = np.random.default_rng([o["seed"], index, 1])
            tags, counts = add_tag_noise(tags, c, o["p_drop"], o["p_add"], rng)
            extra["noise"][split] = counts.as_dict()
        images = _read_images(root / split, [coco["images"][i]["file_name"] for i in chosen])
        transform = (train_transform if split == "train" else eval_transform)(
            cfg, IMAGENET_MEAN, IMAGENET_STD
        )
        sets[split] = TagImages(images, multi_hot(tags, c), transform)
    extra["target_share"] = shares.tolist()
    return DataBundle(
        train=sets["train"],
        val=sets["val"],
        num_classes=c,
        in_channels=3,
        class_names=names,
        extra=extra,
    )
