"""Natural structured groups as sparsity -> spec factories; ``LAYOUTS``: (kh, kw, cin, cout) convs."""

from __future__ import annotations

from prunax.constraints import Block, spec

LAYOUTS = {  # name -> (block shape, axes)
    "filter": ((1,), (3,)),  # a whole output filter
    "channel": ((1,), (2,)),  # an input channel across all filters
    "column": ((1, 1, 1), (0, 1, 2)),  # a (kh, kw, cin) position across filters (a crossbar row)
    "kernel": ((1, 1), (2, 3)),  # one kh x kw kernel
}


def block_groups(prunable: str, layouts: dict) -> dict:
    """{structure: sparsity -> spec with that structure's ``Block(shape, s, axes)`` on every leaf
    matching ``prunable``}, from ``layouts`` {structure: (block shape, axes)}."""
    return {
        name: (lambda s, shape=shape, axes=axes: spec([(prunable, Block(shape, s, axes=axes))]))
        for name, (shape, axes) in layouts.items()
    }


def conv_groups(prunable: str) -> dict:
    """The ``LAYOUTS`` groups of the conv kernels matching ``prunable``."""
    return block_groups(prunable, LAYOUTS)
