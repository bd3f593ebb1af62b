"""The Problem protocol (docs/problems.md): a model as a pure loss closure plus offline data, and
the dense-training ``Recipe`` that comes with it. Both check their fields when built."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import jax
import numpy as np
import optax

from prunax.constraints import Spec, leaves_with_paths

_CLOSURES = ("init", "loss", "batches", "evaluate")


def _is_count(value, least: int) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= least


@dataclass(frozen=True)
class Recipe:
    """How the dense starting point is trained: ``optimizer(total_steps)`` for ``epochs`` epochs
    of ``batch_size``; ``description`` names it in the pretrained cache key."""

    epochs: int
    batch_size: int
    optimizer: Callable[[int], optax.GradientTransformation]
    description: str

    def __post_init__(self):
        if not _is_count(self.epochs, 0):
            raise ValueError(f"Recipe: epochs must be an int >= 0, got {self.epochs!r}")
        if not _is_count(self.batch_size, 1):
            raise ValueError(f"Recipe: batch_size must be an int >= 1, got {self.batch_size!r}")
        if not callable(self.optimizer):
            raise ValueError(
                f"Recipe: optimizer must be callable (total_steps -> optax transform), got {self.optimizer!r}"
            )
        if not isinstance(self.description, str) or not self.description:
            raise ValueError(f"Recipe: description must be a non-empty string, got {self.description!r}")


@dataclass(frozen=True)
class Problem:
    """A model as pure closures over offline data: what ``solvers.fit``, ``solvers.prune`` and the
    benchmarks run. Every field is checked when the Problem is built (a ValueError names the field
    and the problem).

    Fields:

    * ``name``, ``size`` (str): which problem and which of its sizes ("test" is the smoke size);
      they name the pretrained cache entry and appear in errors.
    * ``config`` (dict, JSON-able): everything that fixes the model and the data; the pretrained
      cache key and the checkpoint fingerprint.
    * ``init(key) -> (params, state)``: fresh parameters and the non-trained model state (e.g.
      ``{"batch_stats": ...}``; ``{}`` when there is none).
    * ``loss(params, state, batch, key) -> (loss, (state, logs))``: pure and jit-able; ``key``
      drives augmentation or dropout, ``logs`` is a dict of scalars.
    * ``batches(split, key, batch_size) -> Iterator[dict]`` for split "train" (one shuffled epoch
      of full batches, the order from ``key``) or "test" (every test example in order, the last
      batch padded by repeating the first example); every batch is a dict ``loss`` accepts.
    * ``evaluate(params, state, split="test") -> dict[str, float]``: metrics over a whole split,
      ``metric`` among them.
    * ``metric`` (str): the headline key of ``evaluate``.
    * ``prunable`` (str): a regex of the leaf paths ("stage1_block1/conv1/kernel") pruned by
      default; ``spec(constraint)`` puts a constraint on exactly those leaves.
    * ``train_size`` (int >= 1): training examples; ``steps_per_epoch(b) = train_size // b``.
    * ``recipe`` (``Recipe``): the dense training of ``solvers.fit``/``pretrained`` and the
      default retraining optimizer of ``solvers.prune``.
    * ``groups`` ({structure: sparsity -> Spec}): the model's natural structures ("filter", ...).
    * ``coupled`` ({structure: (sparsity, round_to=1, shared=False) -> Spec}): structures whose
      channels span several leaves (``constraints.coupled``) and can be removed from the model.
    * ``forward(params, state, batch) -> outputs``: the inference pass (logits), jit-able; what a
      compacted model must reproduce and what latency is measured on. None if not offered.
    * ``compact(params, state) -> Compacted`` (None without ``coupled``): the smaller dense model
      with every ``coupled`` channel whose slices are all zero removed (``problems.compact``).
    * ``layers``, ``features``: distillation hooks (``solvers.progressive_distillation``): the
      top-level subtrees of params that are swappable layers, and ``features(params, state,
      batch) -> {"hidden": tuple of (B, L, H), "attentions": tuple of (B, heads, L, L),
      "logits": (B, C), "mask": (B, L) bool}``.
    * ``recalibrate(params, state, batches) -> state`` (None without BatchNorm state): ``state``
      with every BatchNorm's running statistics replaced by those of the training ``batches`` (an
      iterable), from training-mode forward passes only. Per layer, over batches b = 1..B:
      mean = (1/B) Σ_b mean_b and var = (1/B) Σ_b var_b, with mean_b and the biased var_b the
      layer's own training-mode statistics (Flax BatchNorm: over every axis but the features).

    ```python
    problem = problems.get("resnet", "test")  # or problems.classifier(...) for your own model
    params, state = problem.init(jax.random.key(0))
    batch = next(problem.batches("train", jax.random.key(1), 64))
    loss, (state, logs) = jax.jit(problem.loss)(params, state, batch, jax.random.key(2))
    problem.evaluate(params, state)[problem.metric]  # test accuracy; split="train" for training
    ```
    """

    name: str
    size: str
    config: dict
    init: Callable
    loss: Callable
    batches: Callable[[str, jax.Array, int], Iterator[dict]]
    evaluate: Callable
    metric: str
    prunable: str
    train_size: int
    recipe: Recipe
    groups: dict[str, Callable[[float], Spec]] = field(default_factory=dict)
    coupled: dict[str, Callable[..., Spec]] = field(default_factory=dict)
    forward: Callable | None = None
    compact: Callable | None = None
    layers: tuple[str, ...] = ()
    features: Callable | None = None
    recalibrate: Callable | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Problem: name must be a non-empty string, got {self.name!r}")
        checks = [
            ("size", isinstance(self.size, str) and bool(self.size), "a non-empty string"),
            ("config", isinstance(self.config, dict), "a dict (JSON-able: the cache key)"),
            ("metric", isinstance(self.metric, str) and bool(self.metric), "a non-empty string"),
            ("train_size", _is_count(self.train_size, 1), "an int >= 1 (the training examples)"),
            ("recipe", isinstance(self.recipe, Recipe), "a Recipe (how the dense model is trained)"),
            ("layers", isinstance(self.layers, tuple), "a tuple of top-level parameter names"),
            ("features", self.features is None or callable(self.features), "None or callable"),
            ("recalibrate", self.recalibrate is None or callable(self.recalibrate), "None or callable"),
            ("forward", self.forward is None or callable(self.forward), "None or callable"),
            ("compact", self.compact is None or callable(self.compact), "None or callable"),
            ("coupled", isinstance(self.coupled, dict), "a dict {structure: factory}"),
        ]
        checks += [(name, callable(getattr(self, name)), "callable") for name in _CLOSURES]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(
                    f"Problem {self.name!r}: {name} must be {expected}, got {getattr(self, name)!r}"
                )
        self._check_prunable()
        self._check_groups()

    def _check_prunable(self):
        if not isinstance(self.prunable, str):
            raise ValueError(f"Problem {self.name!r}: prunable must be a regex string, got {self.prunable!r}")
        try:
            re.compile(self.prunable)
        except re.error as error:
            raise ValueError(
                f"Problem {self.name!r}: prunable {self.prunable!r} is not a valid regex ({error})"
            ) from None

    def _check_groups(self):
        if not isinstance(self.groups, dict):
            raise ValueError(
                f"Problem {self.name!r}: groups must be a dict, got {type(self.groups).__name__}"
            )
        bad = sorted(str(k) for k, make in self.groups.items() if not callable(make))
        if bad:
            raise ValueError(
                f"Problem {self.name!r}: groups must map structure names to callables "
                f"(sparsity -> Spec); not callable: {bad}"
            )

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
