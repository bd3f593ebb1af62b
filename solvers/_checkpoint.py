"""Crash-consistent, bit-exact checkpoints of a run's pytrees: one ``checkpoint.npz`` holding the
leaves and the bookkeeping (JSON, as a byte array), written whole to a temporary file, flushed to
disk and renamed over the old one, so a checkpoint on disk is always one complete commit — a kill
at any moment leaves the previous checkpoint or the new one, never a mix.

A checkpoint is restored into a *template* with the same tree structure (the run rebuilds it
with the same code), so no pickling is needed and any pytree (optax states, NamedTuples,
``MaskedNode``) round-trips. Typed PRNG keys are stored as their raw key data; dtypes NumPy's
format cannot name (bfloat16, the float8 types) as their raw bits, with the dtype's name beside
them. Arrays are restored with the template's sharding when it has one.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

FILE = "checkpoint.npz"
FORMAT = 2  # the layout (1: arrays and JSON in two files); cache keys include it
_META = "meta"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that does not fit the run restoring it."""


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _storable(x) -> tuple[np.ndarray, str]:
    """The leaf as an array NumPy's format stores exactly, and the dtype name to restore it with."""
    array = np.asarray(jax.random.key_data(x) if _is_key(x) else x)
    name = array.dtype.name
    if array.dtype.kind == "V":  # an ml_dtypes type (bfloat16, float8): its bits as unsigned ints
        array = array.view(np.dtype(f"u{array.dtype.itemsize}"))
    return array, name


def save(run_dir: Path, tree, meta: dict) -> None:
    """Commit ``tree``'s leaves and ``meta`` as the run's checkpoint (atomically replacing any)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    stored = [_storable(x) for x in jax.tree_util.tree_leaves(tree)]
    meta = {**meta, "dtypes": [name for _, name in stored]}
    arrays = {f"a{i}": array for i, (array, _) in enumerate(stored)}
    arrays[_META] = np.frombuffer(json.dumps(meta, indent=1).encode(), np.uint8)
    tmp = run_dir / f".{FILE}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, run_dir / FILE)


def exists(run_dir: Path) -> bool:
    return (run_dir / FILE).exists()


def _unreadable(run_dir: Path, error: Exception) -> CheckpointError:
    return CheckpointError(
        f"the checkpoint {run_dir / FILE} is unreadable ({type(error).__name__}: {error}); it is "
        f"truncated or corrupt: delete {run_dir} (or give another run folder) to start over"
    )


_READ_ERRORS = (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, UnicodeDecodeError)


def _read(run_dir: Path, arrays: bool) -> tuple[dict, list[np.ndarray]]:
    """The bookkeeping and (if ``arrays``) the saved arrays, in one read of the file."""
    try:
        with np.load(run_dir / FILE, allow_pickle=False) as data:
            meta = json.loads(data[_META].tobytes().decode())
            return meta, [data[f"a{i}"] for i in range(len(meta["dtypes"]))] if arrays else []
    except _READ_ERRORS as error:
        raise _unreadable(run_dir, error) from error


def load_meta(run_dir: Path) -> dict:
    """The checkpoint's bookkeeping, without reading its arrays."""
    return _read(run_dir, arrays=False)[0]


def load(run_dir: Path, template):
    """The saved leaves in ``template``'s structure; shapes and dtypes must match it exactly."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    meta, saved = _read(run_dir, arrays=True)
    dtypes = meta["dtypes"]
    if len(dtypes) != len(leaves):
        raise CheckpointError(
            f"the checkpoint {run_dir / FILE} holds {len(dtypes)} arrays, this run has {len(leaves)}: "
            f"it belongs to a different configuration; delete {run_dir} to start over"
        )
    out = []
    for i, (old, name, new) in enumerate(zip(saved, dtypes, leaves)):
        old = old.view(jnp.dtype(name)) if old.dtype.name != name else old
        if _is_key(new):
            out.append(jax.random.wrap_key_data(old, impl=jax.random.key_impl(new)))
            continue
        expected = (np.shape(new), jnp.dtype(getattr(new, "dtype", np.asarray(new).dtype)))
        if (old.shape, old.dtype) != expected:
            raise CheckpointError(
                f"the checkpoint {run_dir / FILE}: array {i} is {old.shape} {old.dtype}, this run "
                f"expects {expected[0]} {expected[1]}: it belongs to a different configuration; "
                f"delete {run_dir} to start over"
            )
        sharding = getattr(new, "sharding", None)
        out.append(jax.device_put(old, sharding) if sharding is not None else jnp.asarray(old))
    return jax.tree_util.tree_unflatten(treedef, out)
