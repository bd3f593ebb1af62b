"""Pytree key paths as slash-separated strings ("conv1/kernel"), the names spec rules match."""

from __future__ import annotations

import difflib

import jax
from jax.tree_util import DictKey, FlattenedIndexKey, GetAttrKey, SequenceKey


def _part(key) -> str:
    if isinstance(key, DictKey):
        return str(key.key)
    if isinstance(key, GetAttrKey):
        return key.name
    if isinstance(key, (SequenceKey, FlattenedIndexKey)):
        return str(key.idx)
    return str(key)


def path_str(key_path) -> str:
    """``(DictKey('conv1'), DictKey('kernel'))`` -> ``"conv1/kernel"``."""
    return "/".join(_part(k) for k in key_path)


def leaves_with_paths(tree) -> tuple[list[str], list, jax.tree_util.PyTreeDef]:
    """Slash paths, leaves and treedef of a pytree (``None`` entries are empty subtrees)."""
    pairs, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [path_str(p) for p, _ in pairs], [leaf for _, leaf in pairs], treedef


def nearby(target: str, paths: list[str], limit: int = 8) -> list[str]:
    """Paths that look like ``target`` (a regex or a path), for error messages."""
    close = difflib.get_close_matches(target, paths, n=limit, cutoff=0.3)
    return close or paths[:limit]
