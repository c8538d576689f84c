"""What each kind of model brings to the loop: its losses and its metrics."""

from ._classification import ClassificationTask

__all__ = ["ClassificationTask"]
