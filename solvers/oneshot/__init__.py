"""One-shot post-training pruning, layer by layer, from calibration data (docs/oneshot.md).

Each linear layer (a Dense kernel, or a conv kernel with im2col inputs) solves
min over Ŵ in a constraint's set of ||X W − X Ŵ||²_F, seen through H = XᵀX:

* ``gram`` / ``accumulate`` / ``empty_gram`` build H from calibration batches, streaming;
  ``damped`` adds λ·mean(diag H)·I; ``reconstruction_error`` is ||X(W − Ŵ)|| / ||X W||.
* ``magnitude`` and ``wanda`` choose the support and keep the weights;
* ``sparsegpt`` sweeps the inputs with optimal-brain-surgeon updates;
* ``admm`` (prunax's own) runs ADMM with the constraint's exact projection, then ``refit``s the
  support by least squares.

Every method takes ``(w, gram, constraint, path)`` and returns a kernel in the constraint's set.
"""

from ._admm import LayerADMMInfo, admm, refit
from ._calibration import Gram, accumulate, damped, empty_gram, gram, reconstruction_error
from ._scores import magnitude, wanda
from ._sparsegpt import inverse_cholesky, sparsegpt

__all__ = [
    "Gram",
    "LayerADMMInfo",
    "accumulate",
    "admm",
    "damped",
    "empty_gram",
    "gram",
    "inverse_cholesky",
    "magnitude",
    "reconstruction_error",
    "refit",
    "sparsegpt",
    "wanda",
]
