"""Training-time augmentation from a recipe's ``data.augment``: on for training images only.

Each test builds the datasets the way a run does (``build_data``) and looks at the images
that come out, so an option that stopped reaching the transform would fail it.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms import v2

from tunekit.config import DataConfig
from tunekit.data import build_data


def _digits(**augment: Any) -> Any:
    # No crop padding: the option under test is the only random step.
    return build_data(
        DataConfig(name="digits", image_size=16, augment={"random_crop_padding": 0, **augment})
    )


def _train_images(bundle: Any, n: int = 16, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.stack([bundle.train[i][0] for i in range(n)])


def test_randaugment_is_in_the_training_transform_and_changes_images() -> None:
    plain, augmented = _digits(), _digits(randaugment=True, randaugment_magnitude=9)
    ops = augmented.train.transform.transforms
    found = [t for t in ops if isinstance(t, v2.RandAugment)]
    assert len(found) == 1 and found[0].magnitude == 9
    assert not any(isinstance(t, v2.RandAugment) for t in augmented.val.transform.transforms)
    before, after = _train_images(plain), _train_images(augmented)
    changed = [i for i in range(len(before)) if not torch.equal(before[i], after[i])]
    # Two random operations per image, some of which (identity, a zero-degree turn) change
    # nothing; most images change.
    assert len(changed) >= len(before) // 2, changed
    # Validation images are never augmented.
    assert torch.equal(augmented.val[0][0], plain.val[0][0])


def test_random_erasing_blanks_a_rectangle_of_training_images_only() -> None:
    bundle = _digits(random_erasing=1.0)
    # After normalisation no digits pixel is exactly 0 ((v / 255 - 0.25) / 0.35 with an
    # integer v), so exact zeros are erased pixels (torchvision erases with 0).
    for i, image in enumerate(_train_images(bundle)):
        erased = (image == 0).all(dim=0)
        assert erased.any(), f"image {i}: nothing erased"
        rows, cols = erased.any(1).nonzero().flatten(), erased.any(0).nonzero().flatten()
        box = erased[int(rows[0]) : int(rows[-1]) + 1, int(cols[0]) : int(cols[-1]) + 1]
        assert box.all(), f"image {i}: the erased pixels are not one rectangle"
        assert float(erased.float().mean()) < 0.5  # torchvision's default: 2% to 33%, rounded
    for i in range(16):
        assert not (bundle.val[i][0] == 0).any()
    assert not (_train_images(_digits()) == 0).any()
