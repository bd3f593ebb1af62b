"""``pointpillars_lite``: pillar feature net → BEV backbone → SSD head on seeded LiDAR scenes.

``model`` is the Flax network, ``loss`` its anchors, targets, loss and decoder, ``scenes``
generates the point clouds and pillarises them, and ``problem`` holds the data and the problem.
"""

from . import loss, model, scenes
from .loss import anchors, decode, direction, pillars_loss, targets
from .model import YAWS, PointPillars, Stage
from .problem import PRUNABLE, SIZES, dataset, problem

__all__ = [
    "PRUNABLE",
    "SIZES",
    "YAWS",
    "PointPillars",
    "Stage",
    "anchors",
    "dataset",
    "decode",
    "direction",
    "loss",
    "model",
    "pillars_loss",
    "problem",
    "scenes",
    "targets",
]
