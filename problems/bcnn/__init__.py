"""``bcnn``: a binarized complex 1-D CNN classifying seeded synthetic RF modulations.

``model`` holds the complex and binary layers, ``signals`` generates the IQ signals and
``problem`` the problem.
"""

from . import model, signals
from .model import (
    BCNN,
    BinaryBlock,
    ComplexBatchNorm,
    ComplexConv,
    alive_filters,
    binary_operations,
    complex_conv,
)
from .problem import LAYOUTS, PRUNABLE, SIZES, problem

__all__ = [
    "BCNN",
    "LAYOUTS",
    "PRUNABLE",
    "SIZES",
    "BinaryBlock",
    "ComplexBatchNorm",
    "ComplexConv",
    "alive_filters",
    "binary_operations",
    "complex_conv",
    "model",
    "problem",
    "signals",
]
