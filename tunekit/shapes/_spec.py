"""What a shapes dataset is made of (:class:`ShapesSpec`), apart from the generator.

Kept free of numpy, PIL and pycocotools so that ``tunekit data shapes --help``
can show the defaults without importing them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from tunekit.errors import DataError

#: Generated sets are written to disk on first use: these keep one within reach of a laptop.
MAX_IMAGES = 1_000_000
MAX_SIDE = 2048


@dataclass(frozen=True)
class ShapesSpec:
    """What a shapes dataset is made of; the same spec always gives the same files."""

    train: int = 2000
    val: int = 200
    size: int = 64
    seed: int = 0
    # Shape sizes as fractions of the image side.
    min_frac: float = 0.18
    max_frac: float = 0.45

    def check(self) -> None:
        for name in ("train", "val", "size", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise DataError(f"expected a whole number, got {value!r}", field=name)
        for name in ("min_frac", "max_frac"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise DataError(f"expected a number, got {value!r}", field=name)
        for name in ("train", "val"):
            count = getattr(self, name)
            if count < 1:
                raise DataError(
                    f"value {count} is not allowed: {name} needs 1 or more images", field=name
                )
            if count > MAX_IMAGES:
                raise DataError(
                    f"value {count} is not allowed: at most {MAX_IMAGES} images "
                    f"({count * self._png_bytes() / 2**30:.0f} GiB of PNG files at this size)",
                    field=name,
                )
        if self.size < 16:
            raise DataError(
                f"value {self.size} is not allowed: images need a side of 16 pixels or more",
                field="size",
            )
        if self.size > MAX_SIDE:
            raise DataError(
                f"value {self.size} is not allowed: at most {MAX_SIDE} pixels a side "
                f"({self.size**2 * 3 / 2**20:.0f} MiB for one decoded image)",
                field="size",
            )
        if not 0 <= self.seed < 2**32:
            raise DataError(
                f"value {self.seed} is not allowed: a seed is between 0 and 2**32 - 1", field="seed"
            )
        if not 0 < self.min_frac <= self.max_frac < 1:
            raise DataError(
                f"shape sizes {self.min_frac}..{self.max_frac} are not allowed: need 0 < min_frac <= max_frac < 1",
                field="min_frac",
            )

    def _png_bytes(self) -> float:
        # Flat-coloured shapes on a plain background compress to about a tenth of raw RGB.
        return self.size**2 * 3 / 10

    def digest(self) -> str:
        """A short hash naming this spec's cache folder."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]
