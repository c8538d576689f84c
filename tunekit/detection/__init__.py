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
else:
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
