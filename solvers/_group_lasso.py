"""Reweighted group lasso (Li et al., Findings of EMNLP 2020, arXiv 2009.08065) as an optax transform.

    min_W f(W) + λ Σ_g α_g ‖W_g‖₂,     α_g ← 1/(‖W_g‖₂ + ε)

over the groups of the spec's constraints (``Constraint.groups``: blocks, tiles, N:M runs, single
entries for Unstructured), the same groups the hard prune keeps or drops (docs/constraints.md,
"Groups": the public BERT code penalised 256×1 groups and hard-pruned 16×16 tiles). α comes from
the initial weights and is refreshed every ``reweight_every`` steps (None: never, as in the
authors' scripts). A ``coupled`` rule's channel is one group across its member leaves: its norm
is sqrt(Σ_m ‖W_{m,g}‖²) over the member slices, shared by all of them.

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

from prunax.constraints import Groups, Spec

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
    alpha: Any  # per constrained leaf, float32 (groups,): the reweighting factors
    penalty: jax.Array  # float32: λ Σ α_g ‖W_g‖ at the last step
    zero_groups: jax.Array  # int32: groups that are exactly zero (after the step, in prox form)
    nonfinite: jax.Array  # bool, sticky


def group_soft_threshold(w: jax.Array, groups: Groups, thresholds: jax.Array, norms=None) -> jax.Array:
    """The prox of Σ_g t_g ‖x_g‖₂ at w: x_g = max(0, 1 − t_g/‖w_g‖)·w_g (0 for a zero group);
    ``norms``: the groups' norms when a group extends beyond w (coupled), else ‖w_g‖."""
    norms = groups.norms(w) if norms is None else norms
    factor = jnp.maximum(0.0, 1.0 - thresholds / jnp.where(norms > 0, norms, 1.0))
    factor = jnp.where(norms > 0, factor, 0.0)
    return w * groups.spread(factor).astype(w.dtype)


@dataclass(frozen=True)
class _Penalised:
    """The groups of each constrained leaf, and the coupled group each leaf's groups belong to."""

    groups: list[Groups]
    keys: list  # per constrained leaf: (rule, coupling) of a coupled member, else None

    @classmethod
    def of(cls, spec: Spec, params, layout: Layout) -> _Penalised:
        keys = [k for k, c in zip(spec.couplings(params), layout.constrained) if c]
        return cls(_leaf_groups(spec, params, layout), keys)

    def norms(self, w: list) -> list:
        """‖W_g‖ of every group of each leaf; on coupled members the whole coupled group's norm."""
        own = [g.norms(x) for g, x in zip(self.groups, w)]
        joint = {}
        for norm, key in zip(own, self.keys):
            if key is not None:
                joint[key] = joint.get(key, 0.0) + jnp.square(norm)
        return [norm if key is None else jnp.sqrt(joint[key]) for norm, key in zip(own, self.keys)]

    def counted(self) -> list[bool]:
        """Whether a leaf's groups are counted in sums over leaves: a coupled group on its first
        member only."""
        seen = set()
        out = []
        for key in self.keys:
            out.append(key is None or key not in seen)
            seen.add(key)
        return out


def _leaf_groups(spec: Spec, params, layout: Layout) -> list[Groups]:
    out = []
    for path, c, leaf in zip(layout.paths, constraint_list(spec, params), jax.tree_util.tree_leaves(params)):
        if c is None:
            continue
        found = c.groups(jnp.shape(leaf))
        if found is None:
            raise ValueError(
                f"reweighted_group_lasso: {c!r} on leaf {path!r} with shape {tuple(jnp.shape(leaf))} has no "
                "groups to penalise; give that leaf a Block, Unstructured, N:M or tiled Pattern constraint"
            )
        out.append(found)
    return out


def _leaf_lams(lam, layout: Layout, penalised: _Penalised, count) -> list:
    """λ of each constrained leaf at step ``count`` (one λ for all members of a coupled group)."""
    paths = [p for p, c in zip(layout.paths, layout.constrained) if c]
    if not isinstance(lam, dict):
        return [hyper(lam, count)] * len(paths)
    missing, extra = sorted(set(paths) - set(lam)), sorted(set(lam) - set(paths))
    if missing or extra:
        raise ValueError(
            f"reweighted_group_lasso: lam per leaf must name exactly the constrained leaves; "
            f"missing {missing}, not constrained {extra}"
        )
    first = {}
    for path, key in zip(paths, penalised.keys):
        if key is not None and lam[first.setdefault(key, path)] != lam[path]:
            raise ValueError(
                f"reweighted_group_lasso: {first[key]!r} and {path!r} are members of one coupled group "
                f"and need one lam, got {lam[first[key]]!r} and {lam[path]!r}"
            )
    return [hyper(lam[p], count) for p in paths]


def _alphas(penalised: _Penalised, w: list, eps: float) -> list:
    return [1.0 / (norm + eps) for norm in penalised.norms(w)]


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
        penalised = _Penalised.of(spec, params, layout)
        _leaf_lams(lam, layout, penalised, 0)  # checks the per-leaf paths
        return GroupLassoState(
            count=jnp.int32(0),
            alpha=layout.build(_alphas(penalised, layout.pick(params), eps)),
            penalty=jnp.float32(0),
            zero_groups=jnp.int32(0),
            nonfinite=jnp.asarray(False),
        )

    def update(updates, state, params=None, **extra_args):
        require_params("reweighted_group_lasso", params)
        layout = Layout.of(spec, params, "reweighted_group_lasso")
        penalised = _Penalised.of(spec, params, layout)
        groups = penalised.groups
        w, u = layout.pick(params), layout.pick(updates)
        ok = inputs_finite(u, extra_args)
        alpha = layout.pick(state.alpha)
        if reweight_every is not None:
            alpha = lax.cond(
                due(state.count, reweight_every) & ok, lambda: _alphas(penalised, w, eps), lambda: alpha
            )
        lams = _leaf_lams(lam, layout, penalised, state.count)
        if prox:
            eta = hyper(learning_rate, state.count)
            stepped = [a + b for a, b in zip(w, u)]
            shrunk = [
                group_soft_threshold(x, grp, eta * lm * al, nm)
                for x, grp, al, lm, nm in zip(stepped, groups, alpha, lams, penalised.norms(stepped))
            ]
            out = [s - a for s, a in zip(shrunk, w)]
            norms = penalised.norms(shrunk)
        else:
            out, norms = [], penalised.norms(w)
            for x, gi, grp, al, lm, norm in zip(w, u, groups, alpha, lams, norms):
                scale = jnp.where(norm > 0, lm * al / jnp.where(norm > 0, norm, 1.0), 0.0)
                out.append(gi + x * grp.spread(scale).astype(x.dtype))
        counted = [(lm, al, nm) for lm, al, nm, c in zip(lams, alpha, norms, penalised.counted()) if c]
        new_state = GroupLassoState(
            count=state.count + 1,
            alpha=layout.build(alpha),
            penalty=sum(lm * jnp.sum(al * nm) for lm, al, nm in counted),
            zero_groups=sum(jnp.sum(nm == 0, dtype=jnp.int32) for _, _, nm in counted),
            nonfinite=state.nonfinite | ~ok,
        )
        return layout.replace(updates, out), new_state

    return optax.GradientTransformationExtraArgs(init, update)


def rgl_lambda(spec: Spec, params, sparsity: float, steps: int, lr: float, shrink: float = 0.5) -> dict:
    """Per constrained leaf i, λ_i for the proximal reweighted group lasso with α_g = 1/‖W⁰_g‖
    over ``steps`` steps of size ``lr``: the soft-threshold removes lr·λ_i/‖W⁰_g‖ per step, so
    λ_i = shrink·q_i²/(steps·lr) removes a fraction ``shrink`` of a group whose norm is q_i, the
    ``sparsity``-quantile of leaf i's group norms (the hard-prune boundary of that leaf; the
    coupled group norms on coupled members, so that they share one λ). Per leaf,
    as the paper's per-matrix λ_i, because the group norms of BERT's matrices differ by 2×. The
    paper's λ = 1e-4 (docs/solvers.md, "Reweighted group lasso") is calibrated to ~10⁴
    subgradient steps of a converged GLUE model; on a budget of a few hundred steps it would not
    move a group, so λ is set from the budget instead."""
    layout = Layout.of(spec, params, "rgl_lambda")
    norms = _Penalised.of(spec, params, layout).norms(layout.pick(params))
    paths = [p for p, c in zip(layout.paths, layout.constrained) if c]
    return {
        path: float(shrink * np.quantile(np.asarray(norm), sparsity) ** 2 / (steps * lr))
        for path, norm in zip(paths, norms)
    }
