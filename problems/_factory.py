"""The common part of every problem factory: looking up a size, and assembling the Problem from
its splits and closures (batches, ``train_size`` and the config's name and size follow)."""

from __future__ import annotations

from ._batching import split_batches
from ._protocol import Problem


def size_entry(name: str, sizes: dict, size: str):
    """``sizes[size]``, or a ValueError listing the valid sizes of problem ``name``."""
    if size not in sizes:
        raise ValueError(f"{name}: unknown size {size!r}; valid: {sorted(sizes)}")
    return sizes[size]


def assemble(name: str, size: str, config: dict, splits: dict, closures: tuple, **fields) -> Problem:
    """The Problem ``name`` at ``size``. ``splits``: {"train": arrays, "test": arrays}, the dicts
    ``batches`` yields from; ``closures``: (init, loss, evaluate); ``config`` gains the name and
    size (it is the cache key); ``fields``: the other Problem fields (metric, prunable, recipe...)."""
    init, loss, evaluate = closures
    return Problem(
        name=name,
        size=size,
        config={"problem": name, "size": size, **config},
        init=init,
        loss=loss,
        batches=split_batches(name, splits),
        evaluate=evaluate,
        train_size=len(next(iter(splits["train"].values()))),
        **fields,
    )
