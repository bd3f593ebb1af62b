"""Hard pruning and masked retraining (docs/solvers.md, "Hard pruning and retraining").

``finalize(spec, params)`` projects every constrained leaf onto its set and returns the params and
masks; ``prune_report`` says per leaf how far that went. ``keep_masked(masks)`` is the optax
transform for retraining: chained *after* the optimizer, it rewrites the final update so that
pruned entries land on exactly 0 whatever momentum, Adam statistics or weight decay proposed.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prunax.constraints import Coupled, GlobalBudget, Spec, apply_masks, leaves_with_paths


class LeafReport(NamedTuple):
    path: str
    shape: tuple[int, ...]
    constraint: str
    target_sparsity: float | None  # what the constraint asks for, where it states one
    achieved_sparsity: float  # fraction of exact zeros after the prune
    feasible: bool
    relative_move: float  # ||W_pruned - W|| / ||W||


def finalize(spec: Spec, params):
    """Hard prune: ``(spec.project(params), spec.mask(params))``. Most public codes prune W this
    way (not Z): the kept support is the best admissible one for the current weights."""
    masks = spec.mask(params)
    return apply_masks(params, masks), masks


def sign_rules(spec: Spec, params):
    """Pytree of bools: the leaves whose constraint has a sign rule (``fixes_signs``)."""
    constraints = spec.constraints(params)
    return jax.tree_util.tree_map(
        lambda c: bool(c is not None and c.fixes_signs), constraints, is_leaf=lambda c: c is None
    )


def prune_report(spec: Spec, dense, pruned) -> list[LeafReport]:
    """Per constrained leaf: target vs achieved sparsity, feasibility (for a leaf of a global
    budget or coupled rule, the whole rule's: its budget is shared), relative distance moved."""
    paths, leaves, owner, _ = spec.assign(dense)
    _, pruned_leaves, _ = leaves_with_paths(pruned)
    constraints = jax.tree_util.tree_leaves(spec.constraints(dense), is_leaf=lambda c: c is None)
    by_rule = spec.feasibility(pruned)
    rows = []
    for path, w, p, c, rule in zip(paths, leaves, pruned_leaves, constraints, owner):
        if c is None:
            continue
        shared = isinstance(spec.rules[rule], GlobalBudget | Coupled)
        feasible = bool(by_rule[spec.rules[rule].include] if shared else c.is_feasible(p, path))
        w, p = np.asarray(w, np.float64), np.asarray(p, np.float64)
        norm = np.linalg.norm(w)
        rows.append(
            LeafReport(
                path=path,
                shape=tuple(w.shape),
                constraint=repr(c),
                target_sparsity=getattr(c, "sparsity", None),
                achieved_sparsity=float(np.mean(p == 0)) if p.size else 0.0,
                feasible=feasible,
                relative_move=float(np.linalg.norm(w - p) / norm) if norm > 0 else 0.0,
            )
        )
    return rows


def _check_masks(masks, params) -> None:
    mask_struct, param_struct = jax.tree_util.tree_structure(masks), jax.tree_util.tree_structure(params)
    if mask_struct != param_struct:
        raise ValueError(f"keep_masked: masks tree {mask_struct} does not match params tree {param_struct}")
    paths, mask_leaves, _ = leaves_with_paths(masks)
    for path, m, w in zip(paths, mask_leaves, jax.tree_util.tree_leaves(params)):
        if np.shape(m) != np.shape(w):
            raise ValueError(
                f"keep_masked: mask of leaf {path!r} has shape {np.shape(m)}, the param {np.shape(w)}"
            )


class KeepSignsState(NamedTuple):
    signs: object  # per leaf: int8 signs at init where signs are kept, else None


def keep_masked(masks, keep_signs=None) -> optax.GradientTransformationExtraArgs:
    """Keep pruned weights at exactly 0 during retraining: chain it last, after the optimizer.

    ``update`` returns ``where(mask, u, -params)``: kept entries take the optimizer's update,
    pruned ones the update that sends them to 0 (a no-op once they are 0). Without ``params`` it
    returns ``where(mask, u, 0)``, which keeps already-zero entries at 0.

    ``keep_signs``: a pytree of bools like ``masks`` (see ``sign_rules``); on those leaves each
    weight also keeps the sign it had at ``init`` (the hard prune): it may shrink to 0 and grow
    back, never cross. That is the projection onto the orthant face of the pruned weights, a
    subset of every sign rule they satisfy, so ColumnSign polarity holds throughout retraining.
    """

    def init(params):
        _check_masks(masks, params)
        if keep_signs is None:
            return optax.EmptyState()
        signs = jax.tree_util.tree_map(
            lambda w, keep: jnp.sign(w).astype(jnp.int8) if keep else None, params, keep_signs
        )
        return KeepSignsState(signs)

    def clamp(u, w, sign):
        if sign is None:
            return u
        new = w + u
        kept = jnp.where(sign > 0, jnp.maximum(new, 0), jnp.where(sign < 0, jnp.minimum(new, 0), 0))
        return (kept - w).astype(u.dtype)

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            if keep_signs is not None:
                raise ValueError("keep_masked(keep_signs=...) needs params in update")
            return jax.tree_util.tree_map(
                lambda u, m: jnp.where(m, u, jnp.zeros_like(u)), updates, masks
            ), state
        _check_masks(masks, params)
        updates = jax.tree_util.tree_map(
            lambda u, m, w: jnp.where(m, u, -w).astype(u.dtype), updates, masks, params
        )
        if keep_signs is not None:
            updates = jax.tree_util.tree_map(clamp, updates, params, state.signs, is_leaf=lambda x: x is None)
        return updates, state

    return optax.GradientTransformationExtraArgs(init, update)
