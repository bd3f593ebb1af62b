"""``pointpillars_lite``: pillar feature net → BEV backbone → SSD head on seeded LiDAR scenes.

``scenes`` generates the point clouds and pillarises them; ``problem`` holds the model, its
anchor targets and loss, and the decoder.
"""

from . import scenes
from .problem import (
    PRUNABLE,
    SIZES,
    YAWS,
    PointPillars,
    Stage,
    anchors,
    decode,
    direction,
    pillars_loss,
    problem,
    targets,
)

__all__ = [
    "PRUNABLE",
    "SIZES",
    "YAWS",
    "PointPillars",
    "Stage",
    "anchors",
    "decode",
    "direction",
    "pillars_loss",
    "problem",
    "scenes",
    "targets",
]
