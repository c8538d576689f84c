"""Multi-label classification: multi-hot targets, BCE or normalised-softmax loss, mAP and precision@k.

Weakly supervised pretraining (Mahajan et al., "Exploring the Limits of Weakly
Supervised Pretraining") trains on images with several noisy tags each. Two
losses are offered:

- ``bce``: binary cross-entropy per class, averaged over samples and classes
  (``nn.BCEWithLogitsLoss``). At initialisation, with logits near 0, it is
  about log 2.
- ``softmax``: the softmax cross-entropy against the target distribution that
  puts 1/k on each of an image's k tags, ``-sum(t * log_softmax(z))``, the
  paper's choice for hashtags. It is averaged over the images that have at
  least one tag (an image whose tags were all dropped has no target
  distribution). At initialisation it is about log C.

Metrics (``val/loss``, ``val/mAP``, ``val/prec@k``):

- mAP: the average precision of each class (ranking the validation images by
  that class's score), averaged over the classes with at least one positive.
  It is computed in torch, for every class at once (one sort of the score
  matrix), which scales to the thousands of classes of a hashtag vocabulary,
  where scikit-learn's ``average_precision_score`` loops over classes in
  Python; tests check it against scikit-learn, ties included.
- precision@k: the share of each image's k highest-scoring classes that are
  among its tags, averaged over all images (an image with no tags scores 0);
  k is capped by the number of classes, as top5 is for classifiers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from tunekit.config import Recipe
from tunekit.core import DistInfo
from tunekit.data import DataBundle
from tunekit.engine import Task
from tunekit.errors import DataError, unknown_choice

from ._classification import ClassificationSpec


class MultilabelSoftmaxLoss(nn.Module):
    """Softmax cross-entropy against multi-hot targets normalised to sum to 1.

    ``targets`` (N, C) holds 0/1; an image with k tags gets 1/k on each. The
    loss is averaged over the images with at least one tag (0 when none has).

    Example:
        >>> z = torch.zeros(2, 4)
        >>> y = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
        >>> round(float(MultilabelSoftmaxLoss()(z, y)), 4)  # log 4 for uniform logits
        1.3863
    """

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        counts = targets.sum(dim=1)
        tagged = counts > 0
        dist = targets / counts.clamp_min(1.0)[:, None]
        per_image = -(dist * F.log_softmax(logits, dim=1)).sum(dim=1)
        # Untagged images contribute 0 and are not counted; the sum keeps the graph.
        return (per_image * tagged).sum() / tagged.sum().clamp_min(1)


#: The multi-label losses by name (``multilabel.loss``).
LOSSES: dict[str, Callable[[], nn.Module]] = {
    "bce": nn.BCEWithLogitsLoss,
    "softmax": MultilabelSoftmaxLoss,
}

#: How each loss turns logits into the probabilities that test-time augmentation averages.
PROBABILITIES = {"bce": "sigmoid", "softmax": "softmax"}


def build_loss(name: str) -> nn.Module:
    """The loss module named ``name`` (``bce`` or ``softmax``)."""
    if name not in LOSSES:
        raise unknown_choice("multilabel loss", name, LOSSES, field="multilabel.loss")
    return LOSSES[name]()


# -- metrics -------------------------------------------------------------


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The average precision of each class (column), NaN for a class with no positive.

    Equal to scikit-learn's ``average_precision_score`` per class: the sum over
    score thresholds of (recall step) x precision, with tied scores forming one
    threshold.

    Args:
        scores: (N, C) scores (logits or probabilities: only their order matters).
        targets: (N, C) 0/1 targets.
    """
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(
            f"scores and targets must be (N, C) of one shape, got {tuple(scores.shape)} "
            f"and {tuple(targets.shape)}"
        )
    scores = scores.double()
    n = scores.shape[0]
    if n == 0:
        return torch.full((scores.shape[1],), float("nan"), dtype=torch.float64)
    s, order = scores.sort(dim=0, descending=True, stable=True)
    y = targets.double().gather(0, order)
    tp = y.cumsum(0)
    rank = torch.arange(1, n + 1, dtype=torch.float64, device=s.device)[:, None]
    precision = tp / rank
    # The last row of each run of tied scores closes a threshold; every row of the run
    # is scored at that row's precision.
    closes = torch.ones_like(s, dtype=torch.bool)
    closes[:-1] = s[:-1] != s[1:]
    index = torch.arange(n, device=s.device)[:, None].expand_as(s)
    end = torch.where(closes, index, torch.full_like(index, n))
    end = end.flip(0).cummin(0).values.flip(0)
    positives = y.sum(0)
    ap = (y * precision.gather(0, end)).sum(0) / positives
    return torch.where(positives > 0, ap, torch.full_like(ap, float("nan")))


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """mAP: the per-class average precision, averaged over classes with a positive (NaN if none)."""
    ap = average_precision(scores, targets)
    present = ~ap.isnan()
    return float(ap[present].mean()) if bool(present.any()) else float("nan")


def precision_at_k(scores: torch.Tensor, targets: torch.Tensor, k: int) -> float:
    """The share of each sample's ``k`` top-scoring classes that are its tags, averaged.

    ``k`` is capped by the number of classes; a sample with no tags scores 0.
    """
    k = min(k, scores.shape[1])
    if scores.shape[0] == 0 or k < 1:
        return float("nan")
    top = scores.topk(k, dim=1).indices
    hits = targets.gather(1, top).double().sum(dim=1) / k
    return float(hits.mean())


def _gather_rows(t: torch.Tensor, dist: DistInfo) -> torch.Tensor:
    """Every rank's rows of ``t`` (CPU), in rank order."""
    if not (dist.distributed and torch_dist.is_available() and torch_dist.is_initialized()):
        return t
    parts: list[Any] = [None] * dist.world_size
    torch_dist.all_gather_object(parts, t)
    return torch.cat(parts)


# -- targets ---------------------------------------------------------------


def to_multi_hot(
    target: Any, num_classes: int, where: str, *, file: str | None = None
) -> torch.Tensor:
    """A dataset item's target as a float multi-hot vector of length ``num_classes``.

    A float or bool tensor (or array) is taken as multi-hot and must be 0/1 of
    length C; integers (an int, a list, tuple or set of them, an integer
    tensor) are tag indices in 0..C-1.
    """
    if isinstance(target, np.ndarray):
        target = torch.from_numpy(target)
    if isinstance(target, torch.Tensor) and (
        target.is_floating_point() or target.dtype == torch.bool
    ):
        if tuple(target.shape) != (num_classes,):
            raise DataError(
                f"{where} has a multi-hot target of shape {tuple(target.shape)}; expected "
                f"({num_classes},), one 0/1 value per class (or give tag indices as integers)",
                field="data",
                file=file,
            )
        out = target.float()
        if bool(((out != 0) & (out != 1)).any()):
            bad = float(out[(out != 0) & (out != 1)][0])
            raise DataError(
                f"{where} has a multi-hot target with the value {bad:g}; each class is 0 or 1",
                field="data",
                file=file,
            )
        return out
    if isinstance(target, torch.Tensor):
        indices: list[Any] = target.flatten().tolist()
    elif isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        indices = [int(target)]
    elif isinstance(target, (list, tuple, set, frozenset)):
        indices = list(target)
    else:
        raise DataError(
            f"{where} has a target of type {type(target).__name__}; a multi-label target is "
            f"a list of tag indices or a 0/1 float vector of length {num_classes}",
            field="data",
            file=file,
        )
    for i in indices:
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise DataError(
                f"{where} has the tag {i!r}; tags are class indices (whole numbers)",
                field="data",
                file=file,
            )
        if not 0 <= i < num_classes:
            raise DataError(
                f"{where} has the tag index {i}, outside 0..{num_classes - 1}: the dataset "
                f"declares {num_classes} classes; give tags below num_classes or raise it",
                field="data",
                file=file,
            )
    out = torch.zeros(num_classes)
    if indices:
        out[torch.tensor([int(i) for i in indices])] = 1.0
    return out


class MultiHotTargets(Dataset[tuple[Any, torch.Tensor]]):
    """A dataset whose targets (tag indices or multi-hot) are checked and made multi-hot."""

    def __init__(
        self, dataset: Dataset[Any], num_classes: int, split: str, *, file: str | None = None
    ) -> None:
        self.dataset, self.num_classes, self.split = dataset, num_classes, split
        self.file = file  # the recipe, named in an error about an item read during training

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Any, torch.Tensor]:
        x, y = self.dataset[i]
        where = f"item {i} of the {self.split} set"
        return x, to_multi_hot(y, self.num_classes, where, file=self.file)


def multi_hot_dataset(
    dataset: Dataset[Any], num_classes: int, split: str, *, file: str | None = None
) -> Dataset[Any]:
    """``dataset`` with its targets checked, up front when it lists them (a ``targets``
    attribute, as torchvision's datasets have), else item by item as they are read."""
    targets = getattr(dataset, "targets", None)
    if (
        isinstance(targets, torch.Tensor)
        and targets.is_floating_point()
        and targets.shape == (len(targets), num_classes)
        and bool(((targets == 0) | (targets == 1)).all())
    ):
        return dataset  # already multi-hot and valid (the shapes_tags set)
    if isinstance(targets, (Sequence, torch.Tensor, np.ndarray)) and len(targets) == len(dataset):  # type: ignore[arg-type]
        for i, y in enumerate(targets):
            to_multi_hot(y, num_classes, f"item {i} of the {split} set", file=file)
    return MultiHotTargets(dataset, num_classes, split, file=file)


# -- the task --------------------------------------------------------------


class MultilabelTask:
    """Loss and metrics for a model that maps images to one logit per tag.

    Args:
        num_classes: size of the output layer (the tag vocabulary).
        loss: ``bce`` or ``softmax`` (see the module's docstring).
        precision_at: the k of each ``val/prec@k`` metric.
        channels_last: convert images to channels-last memory format.

    Example:
        >>> task = MultilabelTask(27, loss="softmax")
        >>> task.metric_names
        ('val/loss', 'val/mAP', 'val/prec@1', 'val/prec@5')
    """

    #: The keys :meth:`evaluate` returns with the default ``precision_at``.
    metric_names: ClassVar[tuple[str, ...]] = ("val/loss", "val/mAP", "val/prec@1", "val/prec@5")

    def __init__(
        self,
        num_classes: int,
        *,
        loss: str = "bce",
        precision_at: Sequence[int] = (1, 5),
        channels_last: bool = False,
    ) -> None:
        self.num_classes = num_classes
        self.loss_name = loss
        self.loss_fn = build_loss(loss)
        #: what test-time augmentation averages: "sigmoid" or "softmax" probabilities
        self.probability = PROBABILITIES[loss]
        self.precision_at = tuple(precision_at)
        self.channels_last = channels_last
        self.metric_names = self.names_for(self.precision_at)  # type: ignore[misc]

    @staticmethod
    def names_for(precision_at: Iterable[int]) -> tuple[str, ...]:
        """The metric keys for these k (known before anything is built)."""
        return ("val/loss", "val/mAP", *(f"val/prec@{k}" for k in precision_at))

    def to_device(self, batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        x = x.to(device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(device, non_blocking=True).float()

    def losses(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        x, y = batch
        return {"loss": self.loss_fn(model(x).float(), y)}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Iterable[Any], dist: DistInfo) -> dict[str, float]:
        """Loss, mAP and precision@k over the (sharded) validation set, gathered from all ranks."""
        scores, targets = [], []
        for batch in loader:
            x, y = self.to_device(batch, dist.device)
            scores.append(model(x).float().cpu())
            targets.append(y.cpu())
        z = _gather_rows(torch.cat(scores) if scores else torch.zeros(0, self.num_classes), dist)
        t = _gather_rows(torch.cat(targets) if targets else torch.zeros(0, self.num_classes), dist)
        out = {
            "val/loss": float(self.loss_fn(z, t)) if len(z) else float("nan"),
            "val/mAP": mean_average_precision(z, t),
        }
        for k in self.precision_at:
            out[f"val/prec@{k}"] = precision_at_k(z, t, k)
        return out


class MultilabelSpec(ClassificationSpec):
    """``task: multilabel``: a classifier's model and data, with multi-hot targets."""

    name = "multilabel"
    no_snapshots = (
        "snapshot ensembles average softmax probabilities, which is wrong for a multilabel "
        "model's tags"
    )
    no_ensembles = "members are averaged as softmax classifiers, wrong for per-tag sigmoids"

    def metric_names(self, recipe: Recipe) -> tuple[str, ...]:
        return MultilabelTask.names_for(recipe.multilabel.precision_at)

    def task(
        self, recipe: Recipe, bundle: DataBundle, *, channels_last: bool, file: str | None
    ) -> Task:
        # Targets checked (and made multi-hot) up front where listed, else as they are read.
        c = bundle.num_classes
        bundle.train = multi_hot_dataset(bundle.train, c, "training", file=file)
        bundle.val = multi_hot_dataset(bundle.val, c, "validation", file=file)
        ml = recipe.multilabel
        return MultilabelTask(
            c, loss=ml.loss, precision_at=ml.precision_at, channels_last=channels_last
        )

    def probe_loss(self, recipe: Recipe, task: Task) -> nn.Module | None:
        # The task's own loss module: the initial-loss check reads its kind (BCE or softmax).
        return task.loss_fn if isinstance(task, MultilabelTask) else None
