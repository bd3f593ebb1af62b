"""``quantum``: quantum neural nets on amplitude-encoded digits.

``simulator`` is the jit-able, differentiable state-vector simulator; ``nets`` the quantum
neurons and circuits as Flax modules; ``problem`` the data encoding and the problem.
"""

from . import nets, simulator
from .problem import (
    GROUPS,
    SIZES,
    binary_weights,
    downsample,
    encode,
    load,
    problem,
    rotation_gates,
    sign_flip_gates,
)

__all__ = [
    "GROUPS",
    "SIZES",
    "binary_weights",
    "downsample",
    "encode",
    "load",
    "nets",
    "problem",
    "rotation_gates",
    "sign_flip_gates",
    "simulator",
]
