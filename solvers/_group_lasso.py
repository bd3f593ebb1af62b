"""Reweighted group lasso (Li et al., Findings of EMNLP 2020, arXiv 2009.08065) as an optax transform.

    min_W f(W) + λ Σ_g α_g ‖W_g‖₂,     α_g ← 1/(‖W_g‖₂ + ε)

over the groups of the spec's constraints (``Constraint.groups``: blocks, tiles, N:M runs, single
entries for Unstructured), the same groups the hard prune keeps or drops (docs/constraints.md,
"Groups": the public BERT code penalised 256×1 groups and hard-pruned 16×16 tiles). α comes from
the initial weights and is refreshed every ``reweight_every`` steps (None: never, as in the
authors' scripts). A ``coupled`` rule's channel is one group across its member leaves: its norm
is sqrt(Σ_m ‖W_{m,g}‖²) over the member slices, and it takes the λ of the coupling's first
member. A leaf in two couplings (its inputs in one, its filters in another) gets both penalties;
the proximal form then applies the couplings' soft-thresholds one after the other.

Two forms:
* subgradient (``prox=False``, first in the chain): adds λ α_g W_g/‖W_g‖ to the gradient (0 on a
  zero group);
* proximal (``prox=True``, **last** in the chain, after the optimizer, with its ``learning_rate``):
  the group soft-threshold W_g ← max(0, 1 − ηλα_g/‖W_g‖)·W_g of the post-step weights, which gives
  exact zeros.

``rgl_lambda`` calibrates λ per leaf to a step budget (the paper's λ suits ~10⁴ steps only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from prunax.constraints import Coupled, Groups, Spec, channel_reduce, spread_channels

from ._leaves import (
    Layout,
    check_every,
    check_range,
    constraint_list,
    due,
    hyper,
    inputs_finite,
    require_params,
)


class GroupLassoState(NamedTuple):
    count: jax.Array  # int32: steps taken
    alpha: Any  # per constrained leaf, float32 (groups,): the reweighting factors (coupled: MaskedNode)
    coupled_alpha: tuple  # per coupled group of the spec's coupled rules, float32 (channels,)
    penalty: jax.Array  # float32: λ Σ α_g ‖W_g‖ at the last step
    zero_groups: jax.Array  # int32: groups that are exactly zero (after the step, in prox form)
    nonfinite: jax.Array  # bool, sticky


def group_soft_threshold(w: jax.Array, groups: Groups, thresholds: jax.Array) -> jax.Array:
    """The prox of Σ_g t_g ‖x_g‖₂ at w: x_g = max(0, 1 − t_g/‖w_g‖)·w_g (0 for a zero group)."""
    return w * groups.spread(_shrink_factor(groups.norms(w), thresholds)).astype(w.dtype)


def _shrink_factor(norms, thresholds):
    factor = jnp.maximum(0.0, 1.0 - thresholds / jnp.where(norms > 0, norms, 1.0))
    return jnp.where(norms > 0, factor, 0.0)


@dataclass(frozen=True)
class _LeafGroups:
    """The groups of one constrained leaf (its constraint's ``groups``)."""

    leaf: int  # position among the constrained leaves
    groups: Groups
    path: str

    def norms(self, w: list):
        return self.groups.norms(w[self.leaf])

    def spread(self, values, w: list, fill) -> list:
        del fill  # the groups cover the whole leaf
        return [(self.leaf, self.groups.spread(values))]


@dataclass(frozen=True)
class _CoupledGroups:
    """One coupling of a ``coupled`` rule: channel j is one group across its members' slices."""

    members: tuple  # (leaf position, axis, size, start)
    channels: int
    path: str  # the first member's, whose λ the group takes

    def norms(self, w: list):
        total = sum(
            channel_reduce(jnp.square(w[i].astype(jnp.float32)), a, z, s, self.channels, jnp.sum)
            for i, a, z, s in self.members
        )
        return jnp.sqrt(total)

    def spread(self, values, w: list, fill) -> list:
        """(leaf position, per-entry values) per member; a leaf may come twice (two ranges)."""
        return [(i, spread_channels(values, w[i].shape, a, z, s, fill)) for i, a, z, s in self.members]


def _units(spec: Spec, params, layout: Layout) -> list:
    """The penalty's group structures: one per constrained leaf of an ordinary rule, one per
    coupling of a ``coupled`` rule (leaf units first, in leaf order)."""
    paths, leaves, owner, _ = spec.assign(params)
    constrained = [p for p, c in zip(layout.paths, layout.constrained) if c]
    position = {p: i for i, p in enumerate(constrained)}
    units = []
    for path, c, leaf, rule in zip(layout.paths, constraint_list(spec, params), leaves, owner):
        if c is None or isinstance(spec.rules[rule], Coupled):
            continue
        found = c.groups(jnp.shape(leaf))
        if found is None:
            raise ValueError(
                f"reweighted_group_lasso: {c!r} on leaf {path!r} with shape {tuple(jnp.shape(leaf))} has no "
                "groups to penalise; give that leaf a Block, Unstructured, N:M or tiled Pattern constraint"
            )
        units.append(_LeafGroups(position[path], found, path))
    shaped = dict(zip(paths, leaves))
    for rule in spec.rules:
        if isinstance(rule, Coupled):
            for c, (_, members) in enumerate(rule.couplings):
                placed = tuple((position[p], a, z, s) for p, a, z, s in members)
                units.append(_CoupledGroups(placed, rule.extent(c, shaped), members[0][0]))
    return units


def _unit_lams(lam, layout: Layout, units: list, count) -> list:
    """λ of each unit at step ``count``: its leaf's, or a coupled group's first member's."""
    paths = [p for p, c in zip(layout.paths, layout.constrained) if c]
    if not isinstance(lam, dict):
        return [hyper(lam, count)] * len(units)
    missing, extra = sorted(set(paths) - set(lam)), sorted(set(lam) - set(paths))
    if missing or extra:
        raise ValueError(
            f"reweighted_group_lasso: lam per leaf must name exactly the constrained leaves; "
            f"missing {missing}, not constrained {extra}"
        )
    return [hyper(lam[unit.path], count) for unit in units]


def _alphas(units: list, w: list, eps: float) -> list:
    return [1.0 / (unit.norms(w) + eps) for unit in units]


def _split(units: list, alphas: list) -> tuple[list, tuple]:
    """(per leaf unit, per coupled unit) of one value per unit."""
    leaf = [a for u, a in zip(units, alphas) if isinstance(u, _LeafGroups)]
    return leaf, tuple(a for u, a in zip(units, alphas) if isinstance(u, _CoupledGroups))


def _merge(units: list, leaf: list, coupled: list) -> list:
    """One α per unit, in unit order, from the per-leaf and per-coupled-group lists."""
    leaf, coupled = iter(leaf), iter(coupled)
    return [next(leaf) if isinstance(unit, _LeafGroups) else next(coupled) for unit in units]


def _leaf_alpha_tree(layout: Layout, units: list, values: list):
    """The per-leaf α tree: each leaf unit's α at its leaf, MaskedNode on coupled members."""
    at = {u.leaf: v for u, v in zip([u for u in units if isinstance(u, _LeafGroups)], values)}
    leaves = iter(range(sum(layout.constrained)))
    return layout.treedef.unflatten(
        [at.get(next(leaves), optax.MaskedNode()) if c else optax.MaskedNode() for c in layout.constrained]
    )


def reweighted_group_lasso(
    spec: Spec,
    lam,
    eps: float = 1e-3,
    reweight_every: int | None = None,
    prox: bool = False,
    learning_rate=None,
) -> optax.GradientTransformationExtraArgs:
    """``lam`` (λ ≥ 0) and ``learning_rate`` are numbers or optax schedules of the step count;
    ``lam`` may also be a dict from each constrained leaf's path to its own λ (the paper's
    per-matrix λ_i)."""
    for value in lam.values() if isinstance(lam, dict) else [lam]:
        check_range("reweighted_group_lasso", "lam", value, low=0, low_open=False)
    check_range("reweighted_group_lasso", "eps", eps, low=0)
    if reweight_every is not None:
        check_every("reweighted_group_lasso", "reweight_every", reweight_every)
    if prox:
        if learning_rate is None:
            raise ValueError(
                "reweighted_group_lasso: prox=True needs learning_rate (the chained optimizer's step size), "
                "since the soft-threshold is learning_rate * lam * alpha_g"
            )
        check_range("reweighted_group_lasso", "learning_rate", learning_rate, low=0)
    elif learning_rate is not None:
        raise ValueError("reweighted_group_lasso: learning_rate is only used with prox=True")

    def init(params):
        layout = Layout.of(spec, params, "reweighted_group_lasso")
        units = _units(spec, params, layout)
        _unit_lams(lam, layout, units, 0)  # checks the per-leaf paths
        leaf_alpha, coupled_alpha = _split(units, _alphas(units, layout.pick(params), eps))
        return GroupLassoState(
            count=jnp.int32(0),
            alpha=_leaf_alpha_tree(layout, units, leaf_alpha),
            coupled_alpha=coupled_alpha,
            penalty=jnp.float32(0),
            zero_groups=jnp.int32(0),
            nonfinite=jnp.asarray(False),
        )

    def update(updates, state, params=None, **extra_args):
        require_params("reweighted_group_lasso", params)
        layout = Layout.of(spec, params, "reweighted_group_lasso")
        units = _units(spec, params, layout)
        w, u = layout.pick(params), layout.pick(updates)
        ok = inputs_finite(u, extra_args)
        stored = jax.tree_util.tree_leaves(state.alpha, is_leaf=lambda x: isinstance(x, optax.MaskedNode))
        leaf_alpha = [x for x in stored if not isinstance(x, optax.MaskedNode)]
        alpha = _merge(units, leaf_alpha, list(state.coupled_alpha))
        if reweight_every is not None:
            alpha = lax.cond(
                due(state.count, reweight_every) & ok, lambda: _alphas(units, w, eps), lambda: alpha
            )
        lams = _unit_lams(lam, layout, units, state.count)
        if prox:  # each unit's group soft-threshold in turn (one pass when no leaf is in two units)
            eta = hyper(learning_rate, state.count)
            x = [a + b for a, b in zip(w, u)]
            for unit, al, lm in zip(units, alpha, lams):
                factor = _shrink_factor(unit.norms(x), eta * lm * al)
                for i, f in unit.spread(factor, x, 1.0):
                    x[i] = x[i] * f.astype(x[i].dtype)
            out = [s - a for s, a in zip(x, w)]
            norms = [unit.norms(x) for unit in units]
        else:  # the subgradient λ α_g W_g / ‖W_g‖, summed over the units a leaf is in
            out, norms = list(u), [unit.norms(w) for unit in units]
            for unit, al, lm, norm in zip(units, alpha, lams, norms):
                scale = jnp.where(norm > 0, lm * al / jnp.where(norm > 0, norm, 1.0), 0.0)
                for i, f in unit.spread(scale, w, 0.0):
                    out[i] = out[i] + w[i] * f.astype(w[i].dtype)
        leaf_alpha, coupled_alpha = _split(units, alpha)
        new_state = GroupLassoState(
            count=state.count + 1,
            alpha=_leaf_alpha_tree(layout, units, leaf_alpha),
            coupled_alpha=coupled_alpha,
            penalty=sum(lm * jnp.sum(al * nm) for lm, al, nm in zip(lams, alpha, norms)),
            zero_groups=sum(jnp.sum(nm == 0, dtype=jnp.int32) for nm in norms),
            nonfinite=state.nonfinite | ~ok,
        )
        return layout.replace(updates, out), new_state

    return optax.GradientTransformationExtraArgs(init, update)


def rgl_lambda(spec: Spec, params, sparsity: float, steps: int, lr: float, shrink: float = 0.5) -> dict:
    """Per constrained leaf i, λ_i for the proximal reweighted group lasso with α_g = 1/‖W⁰_g‖
    over ``steps`` steps of size ``lr``: the soft-threshold removes lr·λ_i/‖W⁰_g‖ per step, so
    λ_i = shrink·q_i²/(steps·lr) removes a fraction ``shrink`` of a group whose norm is q_i, the
    ``sparsity``-quantile of leaf i's group norms (the hard-prune boundary of that leaf; for a
    coupled group, of its channels' norms, keyed by its first member). Per leaf,
    as the paper's per-matrix λ_i, because the group norms of BERT's matrices differ by 2×. The
    paper's λ = 1e-4 (docs/solvers.md, "Reweighted group lasso") is calibrated to ~10⁴
    subgradient steps of a converged GLUE model; on a budget of a few hundred steps it would not
    move a group, so λ is set from the budget instead."""
    layout = Layout.of(spec, params, "rgl_lambda")
    w = layout.pick(params)
    lams = {}
    for unit in _units(spec, params, layout):
        norms = np.asarray(unit.norms(w))
        lams.setdefault(unit.path, float(shrink * np.quantile(norms, sparsity) ** 2 / (steps * lr)))
    for path, unit_path in _member_paths(spec, params).items():  # members that lead no group
        lams.setdefault(path, lams[unit_path])
    return lams


def _member_paths(spec: Spec, params) -> dict:
    """{member path: the first member of its first coupling} over the spec's coupled rules."""
    out = {}
    for rule in spec.rules:
        if isinstance(rule, Coupled):
            for path in rule.paths:
                out[path] = rule.couplings[rule.group_of(path)][1][0][0]
    return out
