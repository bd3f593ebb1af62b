"""``bcnn``: a binarized complex 1-D CNN classifying seeded synthetic RF modulations.

``signals`` generates the IQ signals; ``problem`` holds the complex layers and the problem.
"""

from . import signals
from .problem import (
    BCNN,
    LAYOUTS,
    PRUNABLE,
    SIZES,
    BinaryBlock,
    ComplexBatchNorm,
    ComplexConv,
    alive_filters,
    binary_operations,
    complex_conv,
    problem,
)

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
    "problem",
    "signals",
]
