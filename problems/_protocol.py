"""The Problem protocol (docs/problems.md): a model as a pure loss closure plus offline data.

```python
problem = problems.get("resnet", size="test")
params, state = problem.init(key)
loss, (state, logs) = problem.loss(params, state, batch, key)      # pure, jit-able
for batch in problem.batches("train", key, 64): ...
problem.evaluate(params, state)  # {"accuracy": ..., ...}; problem.metric names the headline one
```
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import jax
import numpy as np
import optax

from prunax.constraints import Spec, leaves_with_paths


@dataclass(frozen=True)
class Recipe:
    """How the dense starting point is trained: ``optimizer(total_steps)`` for ``epochs`` epochs
    of ``batch_size``; ``description`` names it in the pretrained cache key."""

    epochs: int
    batch_size: int
    optimizer: Callable[[int], optax.GradientTransformation]
    description: str


@dataclass(frozen=True)
class Problem:
    name: str
    size: str
    config: dict  # JSON-able: everything that fixes the model and the data (the cache key)
    init: Callable  # key -> (params, state)
    loss: Callable  # (params, state, batch, key) -> (loss, (state, logs))
    batches: Callable[[str, jax.Array, int], Iterator[dict]]  # split "train"/"test", key, batch size
    evaluate: Callable  # (params, state) -> dict[str, float], includes ``metric``
    metric: str
    prunable: str  # regex of the leaves pruned by default
    groups: dict[str, Callable[[float], Spec]] = field(default_factory=dict)  # natural structures
    train_size: int = 0
    recipe: Recipe | None = None
    # Distillation hooks (``solvers.progressive_distillation``): the top-level subtrees of params
    # that are swappable layers, and (params, state, batch) -> {"hidden": tuple of (B, L, H),
    # "attentions": tuple of (B, heads, L, L), "logits": (B, C), "mask": (B, L) bool}.
    layers: tuple[str, ...] = ()
    features: Callable | None = None

    def steps_per_epoch(self, batch_size: int) -> int:
        return self.train_size // batch_size

    def prunable_leaves(self, params) -> dict:
        """``{path: leaf}`` of the leaves of ``params`` that ``prunable`` matches."""
        paths, leaves, _ = leaves_with_paths(params)
        return {p: w for p, w in zip(paths, leaves) if re.search(self.prunable, p)}

    def spec(self, constraint) -> Spec:
        """``constraint`` on every default prunable leaf, the rest unconstrained."""
        from prunax.constraints import spec

        return spec([(self.prunable, constraint)])


def data_digest(arrays: dict[str, np.ndarray]) -> str:
    """A short SHA-256 of named arrays (shapes, dtypes and bytes): put in a problem's ``config``
    so a cached dense model is never reused after its generated data changed."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}{value.shape}{value.dtype}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:16]


def check_batch(batch: dict, expected: dict[str, tuple[tuple[int | None, ...], str]], problem: str) -> None:
    """A ValueError naming the key, shape and dtype when a batch does not fit the model
    (``None`` in an expected shape matches any extent; dtype kinds: "f" float, "i" int)."""
    if not isinstance(batch, dict) or set(batch) != set(expected):
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"{problem}: a batch is a dict with keys {sorted(expected)}, got {keys}")
    for key, (shape, kind) in expected.items():
        value = batch[key]
        got = tuple(np.shape(value))
        fits = len(got) == len(shape) and all(e is None or e == g for e, g in zip(shape, got))
        if not fits or np.dtype(value.dtype).kind != kind:
            want = "(" + ", ".join("*" if e is None else str(e) for e in shape) + ")"
            raise ValueError(
                f"{problem}: batch[{key!r}] must have shape {want} and a {'float' if kind == 'f' else 'int'} "
                f"dtype, got shape {got} and dtype {np.dtype(value.dtype).name}"
            )


def epoch_batches(arrays: dict[str, np.ndarray], key, batch_size: int) -> Iterator[dict]:
    """One shuffled pass (permutation from ``key``), full batches only: one shape, one compile."""
    n = len(next(iter(arrays.values())))
    if not 0 < batch_size <= n:
        raise ValueError(f"batch_size must be in [1, {n}] (the training set), got {batch_size}")
    order = np.asarray(jax.random.permutation(key, n))
    for start in range(0, n - batch_size + 1, batch_size):
        idx = order[start : start + batch_size]
        yield {k: v[idx] for k, v in arrays.items()}


def padded_batches(arrays: dict[str, np.ndarray], batch_size: int) -> Iterator[tuple[dict, int]]:
    """Every example in order, in batches of one size (the last padded by repeating row 0),
    with the number of real rows."""
    n = len(next(iter(arrays.values())))
    for start in range(0, n, batch_size):
        idx = np.arange(start, start + batch_size)
        valid = int(min(batch_size, n - start))
        idx[valid:] = 0
        yield {k: v[idx] for k, v in arrays.items()}, valid
