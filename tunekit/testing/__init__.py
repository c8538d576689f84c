"""Tiny fakes for tests, tunekit's and users' own, and the infrastructure some tests need.

Fakes (each trains in well under a second on a CPU core):

- models: :class:`TinyMLP`, :class:`TinyCNN`, :class:`BNNet` (batch norm and
  dropout, to prove a probe restores a model exactly), :class:`ConstantNet`
  (its output ignores the input: a planted fault);
- data: :func:`random_classification`, :func:`loader`, :func:`tiny_data` (a
  recipe's data builder) and :func:`tiny_recipe`, a recipe that trains in seconds;
- detectors: :func:`tiny_fcos`, :func:`tiny_retinanet`, :func:`tiny_faster_rcnn`
  and :func:`box_batches` to feed them;
- :func:`tiny_trainer`: a Trainer over a tiny model and dataset, for testing hooks.

Infrastructure, apart from the fakes (each needs a Debian package, not a GPU):
:class:`PostgresServer`, a throwaway PostgreSQL for shared-storage searches,
and :func:`chromium_dom`, a report page as headless Chromium draws it.
"""

from typing import TYPE_CHECKING

from tunekit._lazy import attach

if TYPE_CHECKING:
    from ._browser import chromium_dom
    from ._data import loader, random_classification, tiny_data, tiny_recipe
    from ._detectors import box_batches, tiny_faster_rcnn, tiny_fcos, tiny_retinanet
    from ._models import BNNet, ConstantNet, TinyCNN, TinyMLP
    from ._postgres import PostgresServer
    from ._trainer import tiny_trainer
else:
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
