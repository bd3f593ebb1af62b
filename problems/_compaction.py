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

from prunax.constraints import Coupled, channel_reduce, coupled, nonzero_slices, spec

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
    """{group: (channels,) bool, the channels with a nonzero in some params slice}; a group whose
    channels are all zero keeps channel 0 (a zero channel: every layer keeps a width >= 1)."""
    flat = _flat(params)
    rule = Coupled(couplings, 0.0)
    leaves = {p: _leaf(flat, p, rule.couplings[rule.group_of(p)][0], "params") for p in rule.paths}
    rule.check(leaves)
    out = {}
    for c, (name, members) in enumerate(rule.couplings):
        n = rule.extent(c, leaves)
        alive = np.zeros(n, bool)
        for path, axis, size, start in members:
            alive |= channel_reduce(np.asarray(leaves[path]) != 0, axis, size, start, n, np.any)
        out[name] = alive if alive.any() else np.arange(n) == 0
    return out


def take_channels(tree, members_of: dict, kept: dict, what: str):
    """``tree`` with the channels of every group g that ``kept[g]`` (bool per channel) drops cut
    out of its members ``(path, axis[, size[, start]])``. The slices no group names stay, so a
    leaf in several groups (inputs of one, filters of another, or two ranges of one axis) is cut
    along each of them at once."""
    flat = _flat(tree)
    rule = Coupled(members_of, 0.0)
    for path in rule.paths:
        leaf = np.asarray(_leaf(flat, path, rule.couplings[rule.group_of(path)][0], what))
        keep = {}  # axis -> which slices stay
        for c, (_, axis, size, start) in rule.memberships(path):
            name, axis = rule.couplings[c][0], axis % leaf.ndim
            stays = keep.setdefault(axis, np.ones(leaf.shape[axis], bool))
            first = start or 0
            for j in np.flatnonzero(~kept[name]):
                stays[first + j * size : first + (j + 1) * size] = False
        for axis, stays in keep.items():
            leaf = np.take(leaf, np.flatnonzero(stays), axis=axis)
        flat[path] = jnp.asarray(leaf)
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
    n = rule.extent(worst, leaves)
    counts = {p: int(jnp.sum(nonzero_slices(leaves[p], a, z, s, n))) for p, a, z, s in members}
    path = max(counts, key=counts.get)
    budget = "the shared budget" if rule.shared else f"the spec allows {allowed[worst]}"
    return (
        f"coupled group {name!r} has {used[worst]} channels with a nonzero slice but {budget} "
        f"(leaf {path!r} {tuple(np.shape(leaves[path]))}: {counts[path]} nonzero channels along axis "
        f"{next(m[1] for m in members if m[0] == path)})"
    )


def _flat(tree) -> dict:
    return traverse_util.flatten_dict(dict(tree), sep="/", keep_empty_nodes=True)


def _leaf(flat: dict, path: str, group: str, what: str):
    if path not in flat:
        raise ValueError(f"compact: coupled group {group!r} names {path!r}, not a leaf of the {what}")
    return flat[path]
