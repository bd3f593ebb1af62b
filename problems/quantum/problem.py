"""``quantum``: QuantumFlow, VQC and mixed V→U quantum neural nets on amplitude-encoded digits.

Images (MNIST-5k or sklearn digits, docs/problems.md, "quantum") are downsampled to 4×4 (4 qubits) or 8×8 (6
qubits) by block means (MNIST: the 24×24 centre), offset by 1e-6, L2-normalised and set as the
state directly; a 70/30 per-class seeded split, classes relabelled 0..C−1. The nets (``qnn``)
output C probabilities, used as the logits of a softmax cross-entropy (Adam 0.01, bs 32, decay on
the latent binary weights: see ``_recipe``).

Pruning: ``gate`` removes VQC rotations (magnitude on the ``tan_half`` angle leaves: every
stored angle is wrapped to (−π, π) by construction and t = 0 is the identity gate); ``neuron``
removes whole QuantumFlow neurons of a hidden layer (zeroing a single binary weight is not a valid
circuit, a whole neuron is). Evaluation also reports the kept rotation gates and the U-LYR
sign-flip gates, Σ_j min(#(−1), #(+1)) of row j, since (w·ψ)² = (−w·ψ)².
"""

from __future__ import annotations

import re

import jax
import numpy as np
import optax

from prunax.constraints import Block, Unstructured, leaves_with_paths, spec

from .. import _images as images
from .._classifier import classifier
from .._factory import size_entry
from .._protocol import Problem, Recipe, data_digest
from . import nets as qnn

# size -> (dataset, classes, image side, dense epochs)
SIZES = {
    "test": ("digits", (3, 6), 4, 3),
    "mnist36_4x4": ("mnist5k", (3, 6), 4, 30),
    "mnist0369_4x4": ("mnist5k", (0, 3, 6, 9), 4, 30),
    "default": ("mnist5k", (0, 3, 6, 9), 8, 30),
    "digits0369_4x4": ("digits", (0, 3, 6, 9), 4, 30),
    "digits0369_8x8": ("digits", (0, 3, 6, 9), 8, 30),
}
GROUPS = {  # structure -> (leaves, constraint factory), offered where the architecture has the leaves
    "gate": (r"^vqc/tan_half$", Unstructured),
    "neuron": (r"^u1/weight$", lambda s: Block((1,), s, axes=(0,))),
}


def downsample(x: np.ndarray, side: int) -> np.ndarray:
    """(N, S, S, 1) images in [0, 1] to (N, side, side) block means; 28×28 drops a 2-pixel frame."""
    if x.shape[1] == 28:
        x = x[:, 2:26, 2:26]
    factor = x.shape[1] // side
    if factor * side != x.shape[1]:
        raise ValueError(f"cannot block-average {x.shape[1]}x{x.shape[1]} images to {side}x{side}")
    return x[..., 0].reshape(len(x), side, factor, side, factor).mean((2, 4))


def encode(x: np.ndarray, side: int) -> np.ndarray:
    """Amplitude encoding: flattened block means + 1e-6, unit L2 norm, float32 (N, side²)."""
    flat = downsample(x, side).reshape(len(x), -1) + 1e-6
    return (flat / np.linalg.norm(flat, axis=1, keepdims=True)).astype(np.float32)


def load(dataset: str, classes: tuple[int, ...], side: int, seed: int = 0):
    """``(x_train, y_train, x_test, y_test)`` of the class subset, encoded, labels 0..C−1."""
    x_train, y_train, x_test, y_test = images.load(dataset, test_fraction=0.3, seed=seed)
    out = []
    for x, y in ((x_train, y_train), (x_test, y_test)):
        keep = np.isin(y, classes)
        out += [encode(x[keep], side), np.searchsorted(classes, y[keep]).astype(np.int32)]
    return tuple(out)


def sign_flip_gates(params) -> int:
    """Σ over U-LYR neurons of min(#(−1), #(+1)): the Z gates of the cheaper sign choice."""
    total = 0
    for name, leaves in params.items():
        if name.startswith("u"):
            w = np.sign(np.asarray(leaves["weight"]))
            total += int(np.minimum((w < 0).sum(1), (w > 0).sum(1)).sum())
    return total


def rotation_gates(params) -> int:
    return int(np.count_nonzero(np.asarray(params["vqc"]["tan_half"]))) if "vqc" in params else 0


def binary_weights(params):
    """True on the latent weights of the U-LYR and P-LYR neurons (the leaves named ``weight``)."""
    is_weight = lambda path, _: getattr(path[-1], "key", None) == "weight"  # noqa: E731
    return jax.tree_util.tree_map_with_path(is_weight, params)


def _recipe(epochs: int) -> Recipe:
    """Adam 0.01 with decoupled weight decay 5 on the latent binary weights only. Only their signs
    matter, and under plain Adam their magnitudes grow to ~10 in 30 epochs, after which no later
    phase can flip a sign at a sane learning rate; the decay holds them near 0.15 (BinaryConnect
    clips them to [−1, 1] for the same reason) and, measured, also lifts dense accuracy."""

    def optimizer(total_steps: int):
        return optax.adamw(0.01, weight_decay=5.0, mask=binary_weights)

    return Recipe(epochs, 32, optimizer, f"adamw(0.01, decay 5 on binary weights) x {epochs} epochs, bs 32")


def _groups(model: qnn.QuantumNet, x: np.ndarray) -> dict:
    """The ``GROUPS`` whose leaves ``model``'s architecture has, as sparsity -> spec."""
    shapes = jax.eval_shape(lambda key: model.init(key, x[:2], train=True)["params"], jax.random.key(0))
    paths = leaves_with_paths(shapes)[0]
    return {
        name: (lambda s, rx=rx, make=make: spec([(rx, make(s))]))
        for name, (rx, make) in GROUPS.items()
        if any(re.search(rx, path) for path in paths)
    }


def problem(size: str = "default", seed: int = 0, arch: str = "mixer", blocks: int = 2) -> Problem:
    """The quantum problem at ``size`` (see ``SIZES``) with the net ``arch`` (see ``qnn.ARCHS``)."""
    dataset, classes, side, epochs = size_entry("quantum", SIZES, size)
    if arch not in qnn.ARCHS:
        raise ValueError(f"quantum: unknown arch {arch!r}; valid: {qnn.ARCHS}")
    x_train, y_train, x_test, y_test = load(dataset, classes, side, seed)
    model = qnn.QuantumNet(arch, len(classes), blocks)
    groups = _groups(model, x_train)

    def gates(params):
        return {"rotation_gates": rotation_gates(params), "sign_flip_gates": sign_flip_gates(params)}

    config = {
        "arch": arch,
        "blocks": blocks,
        "seed": seed,
        "data": data_digest({"x": x_train, "y": y_train}),  # the cache key follows the encoded data
    }
    return classifier(
        "quantum",
        model,
        (x_train, y_train),
        (x_test, y_test),
        prunable=GROUPS["gate"][0] if "gate" in groups else GROUPS["neuron"][0],
        recipe=_recipe(epochs),
        groups=groups,
        metrics=gates,
        size=size,
        config=config,
    )
