"""Shared helpers of the multi-device tests: the meshes, and the collectives in compiled HLO."""

from __future__ import annotations

import re

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DEVICES = 8
_COLLECTIVE = re.compile(
    r"=\s*\(?(\w+)\[([\d,]*)\][^=]*?\b(all-gather|all-to-all|collective-permute|reduce-scatter)(?:-start)?\("
)


def meshes() -> dict[str, Mesh]:
    devices = np.asarray(jax.devices()[:DEVICES])
    return {"line": Mesh(devices, ("x",)), "grid": Mesh(devices.reshape(4, 2), ("a", "b"))}


# name -> (mesh, PartitionSpec) for a 2-d leaf: rows, columns, both, or replicated
MATRIX_SHARDINGS = {
    "rows": ("line", P("x", None)),
    "columns": ("line", P(None, "x")),
    "grid": ("grid", P("a", "b")),
    "replicated": ("line", P()),
}


def place(array, sharding_name: str, layouts=MATRIX_SHARDINGS):
    mesh_name, spec = layouts[sharding_name]
    return jax.device_put(array, NamedSharding(meshes()[mesh_name], spec))


def moved_elements(compiled_text: str) -> list[tuple[str, int]]:
    """(collective, elements of its result) for every all-gather, all-to-all, collective-permute
    and reduce-scatter in compiled HLO (all-reduces of counts are how a sharded search should
    talk, so they are not listed)."""
    moved = []
    for line in compiled_text.splitlines():
        match = _COLLECTIVE.search(line)
        if match:
            dims = [int(d) for d in match.group(2).split(",") if d]
            moved.append((match.group(3), int(np.prod(dims, dtype=np.int64))))
    return moved


def compiled_without_gathers(fn, *args, shard_elements: int):
    """``jit(fn)`` compiled for ``args``, after checking that no collective in it moves more than
    one shard's worth of elements (no leaf is assembled on one device)."""
    compiled = jax.jit(fn).lower(*args).compile()
    big = [(op, size) for op, size in moved_elements(compiled.as_text()) if size > shard_elements]
    assert not big, f"collectives moving more than a shard ({shard_elements} elements): {big}"
    return compiled
