"""``yolo_tiny``: YOLOv3-tiny (width-scaled) on seeded synthetic shape images, mAP@0.5.

``shapes`` generates the images; ``problem`` holds the model, its YOLOv3 loss and the decoder.
"""

from . import shapes
from .problem import (
    ANCHORS_128,
    CBL,
    PRUNABLE,
    SIZES,
    STRIDES,
    YoloTiny,
    anchors,
    decode,
    detect,
    mirrored,
    overlapping,
    problem,
    targets,
    yolo_loss,
)

__all__ = [
    "ANCHORS_128",
    "CBL",
    "PRUNABLE",
    "SIZES",
    "STRIDES",
    "YoloTiny",
    "anchors",
    "decode",
    "detect",
    "mirrored",
    "overlapping",
    "problem",
    "shapes",
    "targets",
    "yolo_loss",
]
