"""``data.classes``: a held-apart subset of the classes, relabelled 0..k-1 in the order given."""

from __future__ import annotations

from collections import Counter

import pytest

from tunekit.config import DataConfig, Recipe, validate
from tunekit.data import build_data, dataset_labels
from tunekit.errors import ConfigError


def test_digits_five_to_nine_become_classes_zero_to_four() -> None:
    whole = build_data(DataConfig(name="digits", image_size=8))
    part = build_data(DataConfig(name="digits", image_size=8, classes=[9, 5, 6, 7, 8]))
    assert part.num_classes == 5 and part.class_names == ["9", "5", "6", "7", "8"]
    before, after = Counter(dataset_labels(whole.train)), Counter(dataset_labels(part.train))
    # Every item of the kept classes, none of the others, relabelled in the order given.
    assert after == {0: before[9], 1: before[5], 2: before[6], 3: before[7], 4: before[8]}
    assert len(part.val) == sum(Counter(dataset_labels(whole.val))[c] for c in range(5, 10))
    x, y = part.train[0]
    assert x.shape == (1, 8, 8) and 0 <= y < 5
    # The subsets are taken from the kept classes.
    small = build_data(DataConfig(name="digits", image_size=8, classes=[0, 1], train_subset=20))
    assert len(small.train) == 20 and set(dataset_labels(small.train)) == {0, 1}


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"classes": [3, 3]}, "each class once"),
        ({"classes": []}, "at least 1"),
        ({"classes": [-1]}, "at least 0"),
    ],
)
def test_bad_classes_are_one_line(data, needle) -> None:
    with pytest.raises(ConfigError, match=needle) as err:
        validate(Recipe, {"data": data}, file="r.yaml")
    assert "field 'data.classes" in str(err.value)


def test_a_class_the_dataset_does_not_have() -> None:
    with pytest.raises(ConfigError, match="class 10 is not in the dataset: it has 10 classes"):
        build_data(DataConfig(name="digits", image_size=8, classes=[2, 10]))


def test_classes_need_a_classification_task() -> None:
    with pytest.raises(ConfigError, match="task: classification"):
        validate(Recipe, {"task": "detection", "data": {"name": "shapes", "classes": [0]}})
