"""Detection: COCO-format data, torchvision detectors and COCO mAP.

Example:
    >>> from tunekit.config import load_recipe
    >>> from tunekit.run import train
    >>> summary = train(load_recipe("recipes/shapes_fcos.yaml"))  # doctest: +SKIP
    >>> summary["final"]["val/AP"]  # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from tunekit._lazy import attach

if TYPE_CHECKING:
    from ._build import CocoResultsWriter, DetectionSpec, build_detection
    from ._coco import (
        AnnotationReport,
        CocoDetection,
        DataWarning,
        check_annotations,
        collate,
        detection_transforms,
        load_coco,
    )
    from ._data import (
        DETECTION_DATASETS,
        ShapeCrops,
        build_detection_data,
        shapes_crops,
        shapes_spec,
    )
    from ._models import (
        BACKBONES,
        DETECTOR_NAMES,
        TinyResNet,
        build_detector,
        freeze_backbone,
        load_backbone_weights,
        tiny_resnet,
    )
    from ._task import COCO_METRICS, DetectionTask, coco_metrics, to_coco_results, write_results

# Imported on first use (see tunekit._lazy): torchvision and pycocotools only when needed.
_SOURCES = {
    "._build": ("CocoResultsWriter", "DetectionSpec", "build_detection"),
    "._coco": (
        "AnnotationReport",
        "CocoDetection",
        "DataWarning",
        "check_annotations",
        "collate",
        "detection_transforms",
        "load_coco",
    ),
    "._data": (
        "DETECTION_DATASETS",
        "ShapeCrops",
        "build_detection_data",
        "shapes_crops",
        "shapes_spec",
    ),
    "._models": (
        "BACKBONES",
        "DETECTOR_NAMES",
        "TinyResNet",
        "build_detector",
        "freeze_backbone",
        "load_backbone_weights",
        "tiny_resnet",
    ),
    "._task": ("COCO_METRICS", "DetectionTask", "coco_metrics", "to_coco_results", "write_results"),
}
if not TYPE_CHECKING:
    __getattr__, __dir__ = attach(__name__, _SOURCES)

__all__ = [
    "BACKBONES",
    "COCO_METRICS",
    "DETECTION_DATASETS",
    "DETECTOR_NAMES",
    "AnnotationReport",
    "CocoDetection",
    "CocoResultsWriter",
    "DataWarning",
    "DetectionSpec",
    "DetectionTask",
    "ShapeCrops",
    "TinyResNet",
    "build_detection",
    "build_detection_data",
    "build_detector",
    "check_annotations",
    "coco_metrics",
    "collate",
    "detection_transforms",
    "freeze_backbone",
    "load_backbone_weights",
    "load_coco",
    "shapes_crops",
    "shapes_spec",
    "tiny_resnet",
    "to_coco_results",
    "write_results",
]
