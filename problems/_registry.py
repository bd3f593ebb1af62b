"""The registry of built-in problems: ``get(name, size)``, ``names()``, ``sizes(name)``."""

from __future__ import annotations

from . import bcnn, bert, pointpillars_lite, quantum, resnet, smollm2, yolo_tiny
from ._protocol import Problem

REGISTRY = {
    "bcnn": bcnn,
    "bert": bert,
    "pointpillars_lite": pointpillars_lite,
    "quantum": quantum,
    "resnet": resnet,
    "smollm2": smollm2,
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
