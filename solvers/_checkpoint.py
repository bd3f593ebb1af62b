"""Bit-exact checkpoints of a run's pytrees: the leaves in one ``.npz``, the bookkeeping in JSON.

A checkpoint is restored into a *template* with the same tree structure (the run rebuilds it
with the same code), so no pickling is needed and any pytree (optax states, NamedTuples,
``MaskedNode``) round-trips. Typed PRNG keys are stored as their raw key data. Writes go to a
temporary file first and are renamed, so an interrupted write never corrupts the last checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import numpy as np

ARRAYS, META = "checkpoint.npz", "checkpoint.json"


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def save(run_dir: Path, tree, meta: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    leaves = [
        np.asarray(jax.random.key_data(x) if _is_key(x) else x) for x in jax.tree_util.tree_leaves(tree)
    ]
    tmp = run_dir / (ARRAYS + ".tmp.npz")
    np.savez(tmp, *leaves)
    os.replace(tmp, run_dir / ARRAYS)
    tmp_meta = run_dir / (META + ".tmp")
    tmp_meta.write_text(json.dumps(meta, indent=1))
    os.replace(tmp_meta, run_dir / META)


def exists(run_dir: Path) -> bool:
    return (run_dir / ARRAYS).exists() and (run_dir / META).exists()


def load_meta(run_dir: Path) -> dict:
    return json.loads((run_dir / META).read_text())


def load(run_dir: Path, template):
    """The saved leaves in ``template``'s structure; shapes and dtypes must match it exactly."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    with np.load(run_dir / ARRAYS) as data:
        saved = [data[f"arr_{i}"] for i in range(len(data.files))]
    if len(saved) != len(leaves):
        raise ValueError(f"checkpoint in {run_dir} holds {len(saved)} arrays, this run has {len(leaves)}")
    out = []
    for i, (old, new) in enumerate(zip(saved, leaves)):
        if _is_key(new):
            out.append(jax.random.wrap_key_data(old, impl=jax.random.key_impl(new)))
            continue
        if old.shape != np.shape(new) or old.dtype != np.asarray(new).dtype:
            raise ValueError(
                f"checkpoint in {run_dir}: array {i} is {old.shape} {old.dtype}, this run expects "
                f"{np.shape(new)} {np.asarray(new).dtype}; it belongs to a different configuration"
            )
        out.append(jax.numpy.asarray(old))
    return jax.tree_util.tree_unflatten(treedef, out)
