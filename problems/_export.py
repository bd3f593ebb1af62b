"""Export: params (pruned or compacted), model state and the configuration that builds the model,
in one safetensors file (docs/problems.md, "Export").

Tensor names are the slash paths of the trees under ``params/`` and ``state/``
(``params/stage1_block1/conv1/kernel``); the file's metadata holds the configuration as JSON
(``config``), the empty subtrees (so ``{"batch_stats": {}}`` comes back as it went in) and the
prunax version. Loading gives back NumPy arrays, bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
from flax import traverse_util

from prunax import __version__

_TREES = ("params", "state")


class Saved(NamedTuple):
    params: dict
    state: dict
    config: dict


def save(path, params, state=None, config: dict | None = None) -> Path:
    """Write ``params``, ``state`` (nested dicts of arrays) and ``config`` (JSON-able, e.g.
    ``Compacted.config`` or ``problem.config``) to the safetensors file ``path``."""
    from safetensors.numpy import save_file

    tensors, empty = {}, []
    for tree_name, tree in zip(_TREES, (params, {} if state is None else state)):
        for keys, value in _flat(tree, tree_name).items():
            name = "/".join((tree_name, *keys))
            if value is traverse_util.empty_node:
                empty.append(name)
            else:
                tensors[name] = np.array(value, order="C")  # ascontiguousarray would make a 0-d leaf 1-d
    try:
        text = json.dumps(config or {})
    except TypeError as err:
        raise ValueError(f"save: config must be JSON-able ({err})") from None
    metadata = {"config": text, "empty": json.dumps(empty), "prunax": __version__}
    path = Path(path)
    save_file(tensors, str(path), metadata=metadata)
    return path


def load(path) -> Saved:
    """The params, state and config that ``save`` wrote to ``path``."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"load: {path} is not a readable safetensors file ({err})") from None
    if "empty" not in metadata or "config" not in metadata:
        raise ValueError(f"load: {path} was not written by prunax's save (no config in its metadata)")
    flat = {tuple(name.split("/")): value for name, value in tensors.items()}
    flat.update({tuple(name.split("/")): traverse_util.empty_node for name in json.loads(metadata["empty"])})
    trees = traverse_util.unflatten_dict(flat)
    return Saved(trees.get("params", {}), trees.get("state", {}), json.loads(metadata["config"]))


def _flat(tree, name: str) -> dict:
    """``flatten_dict`` of a nested dict, after checking it is one with slash-free string keys."""

    def check(node, where):
        if not isinstance(node, dict):
            return
        for key, child in node.items():
            if not isinstance(key, str) or "/" in key or not key:
                raise ValueError(f"save: {where}: keys must be non-empty strings without '/', got {key!r}")
            check(child, f"{where}/{key}")

    if not isinstance(tree, dict):
        raise ValueError(f"save: {name} must be a nested dict of arrays, got {type(tree).__name__}")
    check(tree, name)
    return traverse_util.flatten_dict(tree, keep_empty_nodes=True)
