"""From a detection recipe to data, detector and task: the detection entry of ``tunekit.tasks``."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from tunekit.config import Recipe
from tunekit.core import DistInfo
from tunekit.data import DataBundle
from tunekit.engine import HookBase, Task
from tunekit.tasks import HeadProbe, TaskSpec

from ._data import build_detection_data, train_max_size
from ._heads import DetectorHeads
from ._models import build_detector
from ._task import DetectionTask, write_results


def build_detection(
    recipe: Recipe, dist: DistInfo | None = None, *, file: str | None = None
) -> tuple[DataBundle, nn.Module, DetectionTask]:
    """The data bundle, the detector (on the CPU, not wrapped) and the task of a detection recipe."""
    bundle = build_detection_data(recipe.data, dist, file=file)
    model = build_detector(
        recipe.model,
        bundle.num_classes,
        image_size=recipe.data.image_size,
        max_size=train_max_size(recipe.data),
        file=file,
    )
    return bundle, model, DetectionTask(bundle.val)


class CocoResultsWriter(HookBase):
    """Writes the last evaluation's predictions as a COCO results JSON (rank 0)."""

    priority = 85

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def after_epoch(self) -> None:
        t = self.trainer
        task = t.task
        if not t.dist.is_main or not isinstance(task, DetectionTask):
            return
        if "val/AP" not in t.history[-1]:
            return  # no evaluation this epoch
        write_results(task.last_results, self.path)


class DetectionSpec(TaskSpec):
    """``task: detection``: a torchvision detector on COCO-format data, scored by COCO mAP; its
    phases keep the stages it was built with frozen, and ``optim.layer_decay`` knows no stages."""

    name = "detection"

    def metric_names(self, recipe: Recipe) -> tuple[str, ...]:
        return DetectionTask.metric_names

    def build(
        self, recipe: Recipe, dist: DistInfo, *, channels_last: bool, file: str | None
    ) -> tuple[DataBundle, nn.Module, Task]:
        return build_detection(recipe, dist, file=file)

    def hooks(self, recipe: Recipe, run_dir: Path) -> list[HookBase]:
        return [CocoResultsWriter(run_dir / "coco_results.json")]

    def head_probe(self, model: nn.Module) -> HeadProbe:
        return DetectorHeads(model)
