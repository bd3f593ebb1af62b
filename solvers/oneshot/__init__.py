"""One-shot post-training pruning, layer by layer, from calibration data (docs/oneshot.md).

Each linear layer (a Dense kernel, or a conv kernel with im2col inputs) solves
min over Ŵ in a constraint's set of ||X W − X Ŵ||²_F, seen through H = XᵀX:

* ``gram`` / ``accumulate`` / ``empty_gram`` build H from calibration batches, streaming;
  ``damped`` adds λ·mean(diag H)·I; ``reconstruction_error`` is ||X(W − Ŵ)|| / ||X W||;
  ``conv_patches`` are a convolution's im2col inputs (patches @ kernel.reshape(-1, cout)).
* ``magnitude`` and ``wanda`` choose the support and keep the weights;
* ``sparsegpt`` sweeps the inputs with optimal-brain-surgeon updates;
* ``admm`` (prunax's own) runs ADMM with the constraint's exact projection, then ``refit``s the
  support by least squares;
* ``prune_coupled`` runs any of them on a coupled rule's kernels jointly (a head's or a neuron's
  slices in several layers kept or removed together).

Every method takes ``(w, gram, constraint, path)`` and returns a kernel in the constraint's set.
``prune_model`` runs one of them over a Problem's Dense and Conv layers, block by block,
calibrated on the inputs that the already-pruned blocks produce, resumable per block;
``LayerRecord`` is its per-layer record.
"""

from ._admm import LayerADMMInfo, admm, refit
from ._calibration import (
    Gram,
    accumulate,
    conv_patches,
    damped,
    empty_gram,
    gram,
    reconstruction_error,
)
from ._coupled import prune_coupled
from ._model import METHODS, LayerRecord, prune_model
from ._scores import magnitude, wanda
from ._sparsegpt import inverse_cholesky, sparsegpt

__all__ = [
    "Gram",
    "LayerADMMInfo",
    "LayerRecord",
    "METHODS",
    "accumulate",
    "admm",
    "conv_patches",
    "damped",
    "empty_gram",
    "gram",
    "inverse_cholesky",
    "magnitude",
    "prune_coupled",
    "prune_model",
    "reconstruction_error",
    "refit",
    "sparsegpt",
    "wanda",
]
