"""``yolo_tiny``: YOLOv3-tiny (width-scaled) on seeded synthetic shape images, mAP@0.5.

``model`` is the Flax network, ``loss`` its anchors, targets, YOLOv3 loss and decoder, ``shapes``
generates the images and ``problem`` holds the data and the problem.
"""

from . import loss, model, shapes
from .loss import (
    ANCHORS_128,
    STRIDES,
    anchors,
    both_scales_loss,
    decode,
    detect,
    overlapping,
    targets,
    yolo_loss,
)
from .model import CBL, YoloTiny
from .problem import PRUNABLE, SIZES, dataset, mirrored, problem

__all__ = [
    "ANCHORS_128",
    "CBL",
    "PRUNABLE",
    "SIZES",
    "STRIDES",
    "YoloTiny",
    "anchors",
    "both_scales_loss",
    "dataset",
    "decode",
    "detect",
    "loss",
    "mirrored",
    "model",
    "overlapping",
    "problem",
    "shapes",
    "targets",
    "yolo_loss",
]
