"""The natural structures of (kh, kw, cin, cout) conv kernels, as sparsity -> spec factories."""

from __future__ import annotations

from prunax.constraints import Block, spec

LAYOUTS = {  # name -> (block shape, axes)
    "filter": ((1,), (3,)),  # a whole output filter
    "channel": ((1,), (2,)),  # an input channel across all filters
    "column": ((1, 1, 1), (0, 1, 2)),  # a (kh, kw, cin) position across filters (a crossbar row)
    "kernel": ((1, 1), (2, 3)),  # one kh x kw kernel
}


def conv_groups(prunable: str) -> dict:
    """{structure: sparsity -> spec with that ``Block`` on every leaf matching ``prunable``}."""
    return {
        name: (lambda s, shape=shape, axes=axes: spec([(prunable, Block(shape, s, axes=axes))]))
        for name, (shape, axes) in LAYOUTS.items()
    }
