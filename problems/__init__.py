"""Models as loss closures with offline data (docs/problems.md): ``problems.get(name, size)``,
or ``problems.classifier(name, model, train=(x, y), test=(x, y))`` for your own Flax model
(``problems.register_statistics`` tells its BatchNorm recalibration about a custom norm layer).

``resnet`` (digits / MNIST-5k), ``bert`` (MiniLM on Rotten-Tomatoes sentences), ``yolo_tiny``
(synthetic shapes), ``pointpillars_lite`` (synthetic LiDAR), ``bcnn`` (synthetic RF signals) and
``quantum`` (amplitude-encoded digits on a state-vector simulator).
"""

from . import bcnn, bert, detection, pointpillars_lite, quantum, resnet, yolo_tiny
from ._assets import MissingAsset
from ._classifier import classifier
from ._compaction import Compacted, compact
from ._export import Saved, load, save
from ._protocol import Problem, Recipe
from ._recalibration import register_statistics
from ._recipes import adam_recipe
from ._registry import REGISTRY, get, names, sizes

__all__ = [
    "REGISTRY",
    "Compacted",
    "MissingAsset",
    "Problem",
    "Recipe",
    "Saved",
    "adam_recipe",
    "bcnn",
    "bert",
    "classifier",
    "compact",
    "detection",
    "get",
    "load",
    "names",
    "pointpillars_lite",
    "quantum",
    "register_statistics",
    "resnet",
    "save",
    "sizes",
    "yolo_tiny",
]
