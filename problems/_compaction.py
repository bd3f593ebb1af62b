"""Compaction: a pruned model made physically smaller (docs/problems.md, "Compaction").

A problem's ``coupled`` structures name, per coupled group, every slice a channel occupies — in
params (kernels, BatchNorm scale and bias, the next layer's input rows) and in state (BatchNorm
running statistics). A channel whose params slices are all zero computes nothing the rest of the
model can see, so removing it from every member (and the running statistics along with it) gives
a smaller dense model with the same outputs. ``compact`` does that and returns the new params,
state, the widths that build the smaller model, and its Problem (same data, the smaller model).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from prunax.constraints import Coupled, coupled, nonzero_slices, spec

from ._protocol import Problem


class Compacted(NamedTuple):
    """What ``compact`` returns: the smaller model's params and state, the configuration that
    builds it (per-layer widths), and its Problem (``problem.forward`` runs it)."""

    params: dict
    state: dict
    config: dict
    problem: Problem


def coupled_structure(*couplings: dict) -> Callable:
    """``(sparsity, round_to=1, shared=False) -> Spec``: one ``coupled`` rule per dict of
    couplings (each rule its own budget: heads and FFN neurons are not ranked against each other)."""

    def make(sparsity: float, round_to: int = 1, shared: bool = False):
        return spec([coupled(sparsity, c, round_to=round_to, shared=shared) for c in couplings])

    return make


def kept_channels(params, couplings: dict) -> dict[str, np.ndarray]:
    """{group: indices of its channels that have a nonzero in some params slice}; a group whose
    channels are all zero keeps channel 0 (a zero channel: every layer keeps a width >= 1)."""
    flat = _flat(params)
    out = {}
    for name, members in couplings.items():
        alive = np.zeros(0, bool)
        for path, axis, size in map(_triple, members):
            used = np.asarray(nonzero_slices(_leaf(flat, path, name, "params"), axis, size))
            alive = used if alive.size == 0 else alive | used
        out[name] = np.flatnonzero(alive) if alive.any() else np.zeros(1, np.int64)
    return out


def take_channels(tree, members_of: dict, kept: dict, what: str):
    """``tree`` with every member ``(path, axis[, size])`` of group g cut to its channels
    ``kept[g]`` along axis (channel j: slices j·size .. (j+1)·size − 1)."""
    flat = _flat(tree)
    for name, members in members_of.items():
        for path, axis, size in map(_triple, members):
            slices = (np.asarray(kept[name])[:, None] * size + np.arange(size)).reshape(-1)
            flat[path] = jnp.take(jnp.asarray(_leaf(flat, path, name, what)), slices, axis=axis)
    return traverse_util.unflatten_dict(flat, sep="/")


def compact(problem: Problem, params, state, within=None) -> Compacted:
    """The smaller dense model computing what the pruned ``params`` compute (see the module
    docstring). ``within``: a Spec the params must satisfy first (a ValueError names the coupled
    group, its most-used leaf and how many slices are still nonzero)."""
    if problem.compact is None:
        raise ValueError(f"{problem.name}: has no compaction (it declares no coupled structures)")
    if within is not None:
        check_within(within, params)
    return problem.compact(params, state)


def check_within(rules, params) -> None:
    """ValueError unless ``params`` satisfy the Spec ``rules``, naming what is still nonzero."""
    feasible = rules.feasibility(params)
    for rule in rules.rules:
        if isinstance(rule, Coupled) and not bool(feasible[rule.include]):
            raise ValueError(f"compact: {_excess(rule, params)}; prune to the spec first")
    failed = [key for key, ok in feasible.items() if not bool(ok)]
    if failed:
        raise ValueError(f"compact: the params are not feasible for the spec rules {failed}; prune first")


def _excess(rule: Coupled, params) -> str:
    """The coupled group furthest over its budget, its most-used leaf and the nonzero slices."""
    flat = _flat(params)
    leaves = {p: flat[p] for p in rule.paths}
    used = [int(u) for u in rule.used(leaves)]
    allowed = [rule.kept_channels(rule.extent(c, leaves)) for c in range(len(rule.couplings))]
    worst = int(np.argmax([u - a for u, a in zip(used, allowed)]))
    name, members = rule.couplings[worst]
    counts = {p: int(jnp.sum(nonzero_slices(leaves[p], a, z))) for p, a, z in members}
    path = max(counts, key=counts.get)
    budget = "the shared budget" if rule.shared else f"the spec allows {allowed[worst]}"
    return (
        f"coupled group {name!r} has {used[worst]} channels with a nonzero slice but {budget} "
        f"(leaf {path!r} {tuple(np.shape(leaves[path]))}: {counts[path]} nonzero channels along axis "
        f"{rule.axis_of(path)})"
    )


def _triple(member) -> tuple[str, int, int]:
    return (*member, 1) if len(member) == 2 else tuple(member)


def _flat(tree) -> dict:
    return traverse_util.flatten_dict(dict(tree), sep="/", keep_empty_nodes=True)


def _leaf(flat: dict, path: str, group: str, what: str):
    if path not in flat:
        raise ValueError(f"compact: coupled group {group!r} names {path!r}, not a leaf of the {what}")
    return flat[path]
