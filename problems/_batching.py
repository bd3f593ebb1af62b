"""Batching over arrays of examples (dicts of equally long arrays): shuffled training epochs,
padded in-order passes, and a problem's ``batches`` and split lookup over its named splits."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import jax
import numpy as np

SPLITS = ("train", "test")


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
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(next(iter(arrays.values())))
    for start in range(0, n, batch_size):
        idx = np.arange(start, start + batch_size)
        valid = int(min(batch_size, n - start))
        idx[valid:] = 0
        yield {k: v[idx] for k, v in arrays.items()}, valid


def padded_map(fn: Callable, arrays: dict[str, np.ndarray], batch_size: int):
    """``fn(batch)`` (an array, or a tuple of arrays, with one row per example) over every example
    in order: padded batches of one size, so a jitted ``fn`` compiles once; the padding rows are
    dropped and the outputs concatenated (a tuple if ``fn`` returns one)."""
    parts, single = [], True
    for batch, valid in padded_batches(arrays, batch_size):
        out = fn(batch)
        single = not isinstance(out, tuple)
        parts.append([np.asarray(o)[:valid] for o in ((out,) if single else out)])
    joined = tuple(np.concatenate(column) for column in zip(*parts))
    return joined[0] if single else joined


def select(problem: str, splits: dict, split: str):
    """``splits[split]`` for split "train" or "test", or a ValueError naming the problem."""
    if split not in SPLITS or split not in splits:
        raise ValueError(f"{problem}: split must be 'train' or 'test', got {split!r}")
    return splits[split]


def split_batches(problem: str, splits: dict[str, dict[str, np.ndarray]]) -> Callable[..., Iterator[dict]]:
    """A Problem's ``batches(split, key, batch_size)`` over ``{"train": arrays, "test": arrays}``:
    shuffled full training batches, or every test example in order (padded, ``key`` unused)."""

    def batches(split: str, key, batch_size: int) -> Iterator[dict]:
        arrays = select(problem, splits, split)
        if split == "train":
            return epoch_batches(arrays, key, batch_size)
        return (batch for batch, _ in padded_batches(arrays, batch_size))

    return batches
