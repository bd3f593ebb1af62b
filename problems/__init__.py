"""Models as loss closures with offline data (docs/problems.md): ``problems.get(name, size)``.

``resnet`` (digits / MNIST-5k), ``bert`` (MiniLM on Rotten-Tomatoes sentences), ``yolo_tiny``
(synthetic shapes), ``pointpillars_lite`` (synthetic LiDAR), ``bcnn`` (synthetic RF signals) and
``quantum`` (amplitude-encoded digits on a state-vector simulator).
"""

from . import bcnn, bert, pointpillars_lite, quantum, resnet, yolo_tiny
from ._assets import MissingAsset
from ._protocol import Problem, Recipe

REGISTRY = {
    "bcnn": bcnn,
    "bert": bert,
    "pointpillars_lite": pointpillars_lite,
    "quantum": quantum,
    "resnet": resnet,
    "yolo_tiny": yolo_tiny,
}


def names() -> list[str]:
    return sorted(REGISTRY)


def sizes(name: str) -> list[str]:
    return list(_module(name).SIZES)


def _module(name: str):
    if name not in REGISTRY:
        raise ValueError(f"unknown problem {name!r}; valid: {names()}")
    return REGISTRY[name]


def get(name: str, size: str = "default", **kwargs) -> Problem:
    """The problem ``name`` at ``size`` (``sizes(name)`` lists them; "test" is the smoke size)."""
    return _module(name).problem(size, **kwargs)


__all__ = ["MissingAsset", "Problem", "Recipe", "get", "names", "sizes"]
