"""What a shapes dataset is made of (:class:`ShapesSpec`), apart from the generator.

Kept free of numpy, PIL and pycocotools so that ``tunekit data shapes --help``
can show the defaults without importing them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from tunekit.errors import DataError


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
        for name in ("train", "val"):
            if getattr(self, name) < 1:
                raise DataError(
                    f"value {getattr(self, name)} is not allowed: {name} needs 1 or more images",
                    field=name,
                )
        if self.size < 16:
            raise DataError(
                f"value {self.size} is not allowed: images need a side of 16 pixels or more",
                field="size",
            )
        if not 0 < self.min_frac <= self.max_frac < 1:
            raise DataError(
                f"shape sizes {self.min_frac}..{self.max_frac} are not allowed: need 0 < min_frac <= max_frac < 1",
                field="min_frac",
            )

    def digest(self) -> str:
        """A short hash naming this spec's cache folder."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]
