"""The weakly labelled shapes set: tags from the annotations, noise at the asked rates, a long
tail, all fixed by the seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tunekit.config import DataConfig
from tunekit.data import build_data
from tunekit.data._tags import (
    add_tag_noise,
    image_tags,
    long_tail_sample,
    tag_names,
    zipf_ranks,
    zipf_shares,
)
from tunekit.errors import ConfigError

C = 27


def _random_tags(n: int, seed: int = 0) -> list[frozenset[int]]:
    """Tag sets like the generator's: 1 to 4 distinct tags an image, uniform over the vocabulary."""
    rng = np.random.default_rng(seed)
    return [
        frozenset(rng.choice(C, size=rng.integers(1, 5), replace=False).tolist()) for _ in range(n)
    ]


def test_noise_rates_measured_on_thousands_of_tags_match_the_settings() -> None:
    true = _random_tags(3000)
    noisy, counts = add_tag_noise(true, C, 0.2, 0.1, np.random.default_rng(7))
    assert counts.true_tags == sum(len(t) for t in true) > 7000
    # Counted from the sets themselves, not from what the function says it did.
    dropped = sum(len(t - n) for t, n in zip(true, noisy, strict=True))
    added = [n - t for t, n in zip(true, noisy, strict=True)]
    assert dropped == counts.dropped and sum(len(a) for a in added) == counts.added
    assert all(len(a) <= 1 for a in added)  # at most one wrong tag an image
    assert dropped / counts.true_tags == pytest.approx(0.2, abs=0.025)  # sd 0.005
    assert counts.added / len(true) == pytest.approx(0.1, abs=0.025)  # sd 0.0055
    clean, none = add_tag_noise(true, C, 0.0, 0.0, np.random.default_rng(7))
    assert clean == true and none.dropped == none.added == 0


def test_noise_is_fixed_by_the_seed() -> None:
    true = _random_tags(500)
    a, _ = add_tag_noise(true, C, 0.3, 0.3, np.random.default_rng([5, 0, 1]))
    b, _ = add_tag_noise(true, C, 0.3, 0.3, np.random.default_rng([5, 0, 1]))
    c, _ = add_tag_noise(true, C, 0.3, 0.3, np.random.default_rng([6, 0, 1]))
    assert a == b and a != c


def test_long_tail_selection_follows_the_zipf_ranks() -> None:
    pool = _random_tags(4000, seed=1)
    ranks = zipf_ranks(C, seed=0)
    shares = zipf_shares(ranks, 1.0)
    chosen = long_tail_sample(pool, C, 1000, shares, np.random.default_rng(0))
    assert len(chosen) == len(set(chosen.tolist())) == 1000
    counts = np.zeros(C)
    for i in chosen:
        counts[sorted(pool[i])] += 1
    by_rank = counts[np.argsort(ranks)] / counts.sum()
    natural = np.zeros(C)
    for t in pool:
        natural[sorted(t)] += 1
    natural = natural[np.argsort(ranks)] / natural.sum()
    # The pool is about flat; the kept images are long-tailed in the drawn rank order.
    assert natural.max() / natural.min() < 1.5
    assert by_rank[0] / by_rank[-1] > 5
    assert by_rank[:9].sum() > 2 * by_rank[-9:].sum()
    assert np.corrcoef(np.log(by_rank), np.log(np.arange(1, C + 1)))[0, 1] < -0.9
    again = long_tail_sample(pool, C, 1000, shares, np.random.default_rng(0))
    assert np.array_equal(chosen, again)


@pytest.fixture(scope="module")
def tags_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tags") / "pool"


def _cfg(root: Path, **kwargs: object) -> DataConfig:
    base = {"train": 60, "val": 20, "pool_factor": 2, "p_drop": 0.3, "p_add": 0.3}
    return DataConfig(name="shapes_tags", root=str(root), image_size=32, kwargs={**base, **kwargs})


def test_the_dataset_tags_what_the_images_show_and_is_fixed_by_the_seed(tags_root: Path) -> None:
    bundle = build_data(_cfg(tags_root))
    assert bundle.num_classes == C and bundle.class_names == tag_names("shape_color")
    assert "red square" in bundle.class_names
    assert len(bundle.train) == 60 and len(bundle.val) == 20  # type: ignore[arg-type]
    x, y = bundle.train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y.shape == (C,)
    # Validation tags are the true ones: each is a tag of the annotations of some pool image.
    coco = json.loads((tags_root / "annotations" / "instances_val.json").read_text())
    true = {frozenset(t) for t in image_tags(coco, "shape_color")}
    for row in bundle.val.targets:  # type: ignore[attr-defined]
        assert frozenset(torch.nonzero(row).flatten().tolist()) in true
    noise = bundle.extra["noise"]["train"]
    assert noise["dropped"] > 0 and noise["added"] > 0 and "val" not in bundle.extra["noise"]
    again = build_data(_cfg(tags_root))
    assert torch.equal(again.train.targets, bundle.train.targets)  # type: ignore[attr-defined]
    assert torch.equal(again.train.images, bundle.train.images)  # type: ignore[attr-defined]
    other = build_data(_cfg(tags_root, p_drop=0.31))
    assert not torch.equal(other.train.targets, bundle.train.targets)  # type: ignore[attr-defined]
    shapes = build_data(_cfg(tags_root, vocabulary="shape", p_drop=0.0, p_add=0.0))
    assert shapes.class_names == ["square", "circle", "triangle"]
    assert bool((shapes.train.targets.sum(1) >= 1).all())  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"p_drop": 1.5}, "data.kwargs.p_drop", "a probability"),
        ({"zipf": -1}, "data.kwargs.zipf", "Zipf exponent"),
        ({"vocabulary": "colour"}, "data.kwargs.vocabulary", "shape_color, shape"),
        ({"noise": 0.1}, "data.kwargs.noise", "unknown key 'noise'"),
        ({"train": 0}, "data.kwargs.train", "1 or more"),
    ],
)
def test_bad_settings_name_the_field(tmp_path: Path, kwargs: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        build_data(_cfg(tmp_path / "never", **kwargs))
    assert info.value.field == field
    assert not (tmp_path / "never").exists()
