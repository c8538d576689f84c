"""The shapes set: a generated COCO-format dataset of coloured shapes on clutter, the CPU
twin of COCO that detection studies, the tags set and the tests train on.

Example:
    >>> from tunekit.shapes import ShapesSpec, generate_shapes
    >>> root = generate_shapes("/tmp/shapes", ShapesSpec(train=100, val=20))  # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from tunekit._lazy import attach

if TYPE_CHECKING:
    from ._generate import CATEGORIES, PALETTE, default_cache_dir, ensure_shapes, generate_shapes
    from ._spec import ShapesSpec
else:
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
