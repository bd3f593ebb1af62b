"""One-shot pruning of coupled groups (docs/oneshot.md, "Coupled groups"): the kernels of a
coupled channel (an attention head's query columns and output rows, an FFN neuron's gate and up
columns and down row) are kept or removed together, so their layers are solved jointly:

    min Σ_l ½ tr((W_l − Ŵ_l)ᵀ H_l (W_l − Ŵ_l))  subject to  (Ŵ_l)_l in the coupled set.

Every method ranks channels by the coupled rule's energies — the summed squares of a channel's
slices — of its own scores, and the choice is one for all member kernels:

* ``magnitude``: the rule's projection of the weights themselves (every member as it is);
* ``wanda``: of the input-scaled kernels |W_ij|·||X_j||;
* ``sparsegpt``: of the saliencies W_ij / U_jj, then each kernel's column sweep with that mask;
* ``admm``: the ADMM of ``_admm`` over all member kernels at once, each in its unit-diagonal
  variables, with the rule's projection as the Z-update (exact for the joint problem in those
  variables when no leaf is in two couplings), then each kernel's refit on its support.

Members without calibration data (1-d leaves: biases, norm scales) do not vote in the three
calibrated methods (they enter the energies as zeros) and lose the slices of every dropped
channel.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from prunax.constraints import Coupled

from ._admm import check_settings, iterate, refit, unit_diagonal
from ._calibration import Gram, as_matrix, damped
from ._scores import input_scaled
from ._sparsegpt import check_block, prepared, saliency, sweep_with_mask

METHODS = ("magnitude", "wanda", "sparsegpt", "admm")


def _zero_followers(rule: Coupled, leaves: dict, grams: dict) -> dict:
    return {p: jnp.zeros(np.shape(leaves[p]), jnp.float32) for p in rule.paths if p not in grams}


def prune_coupled(
    rule: Coupled,
    leaves: dict,
    grams: dict[str, Gram],
    method: str = "admm",
    damping: float = 0.01,
    block: int = 128,
    rho: float = 0.1,
    max_iterations: int = 300,
    refit_iterations: int = 20,
) -> dict:
    """{member path: its pruned leaf} for the coupled ``rule`` (every member of it in ``leaves``;
    a Gram matrix in ``grams`` for every kernel). ``damping``: all but magnitude; ``block``:
    sparsegpt's; ``rho``, ``max_iterations``, ``refit_iterations``: admm's (as the layer methods)."""
    if method not in METHODS:
        raise ValueError(f"prune_coupled: unknown method {method!r}; valid: {list(METHODS)}")
    leaves = {p: jnp.asarray(leaves[p]) for p in rule.paths}
    kernels = [p for p in rule.paths if p in grams]
    for path in kernels:
        as_matrix(leaves[path], grams[path], path)
    where = ", ".join(name for name, _ in rule.couplings[:3]) + ("..." if len(rule.couplings) > 3 else "")
    if method == "magnitude":
        masks = rule.masks(leaves)
    elif method == "wanda":
        scores = {p: input_scaled(leaves[p], grams[p], p) for p in kernels}
        masks = rule.masks({**scores, **_zero_followers(rule, leaves, grams)})
    elif method == "sparsegpt":
        check_block(where, block)
        sweeps = {p: prepared(leaves[p], grams[p], p, damping) for p in kernels}
        scores = {p: saliency(*sweeps[p], leaves[p].shape) for p in kernels}
        masks = rule.masks({**scores, **_zero_followers(rule, leaves, grams)})
        swept = {}
        for p in kernels:
            weights, u = sweeps[p]
            keep = masks[p].reshape(weights.shape[1], -1).T
            swept[p] = sweep_with_mask(weights, u, keep, block).T.reshape(leaves[p].shape)
        leaves = {**leaves, **swept}
    else:
        check_settings(where, rho, max_iterations, refit_iterations)
        scaled = [
            unit_diagonal(as_matrix(leaves[p], grams[p], p), damped(grams[p], damping, p)) for p in kernels
        ]
        followers = tuple((p, np.shape(leaves[p])) for p in rule.paths if p not in grams)
        fitted, masks = _joint_admm(
            tuple(m for m, _, _ in scaled),
            tuple(h for _, h, _ in scaled),
            jnp.float32(rho),
            rule=rule,
            kernels=tuple((p, tuple(leaves[p].shape)) for p in kernels),
            followers=followers,
            max_iterations=max_iterations,
            refit_iterations=refit_iterations,
        )
        unscaled = {
            p: (f / s[:, None]).reshape(leaves[p].shape) for p, f, (_, _, s) in zip(kernels, fitted, scaled)
        }
        leaves = {**leaves, **unscaled}
    return {p: jnp.where(masks[p], leaves[p], 0).astype(leaves[p].dtype) for p in rule.paths}


@partial(jax.jit, static_argnames=("rule", "kernels", "followers", "max_iterations", "refit_iterations"))
def _joint_admm(matrices, hs, rho, *, rule, kernels, followers, max_iterations, refit_iterations):
    """ADMM over the member kernels (unit-diagonal variables) with the coupled projection; the
    refitted matrices and the final masks of every member."""
    zeros = {p: jnp.zeros(shape, jnp.float32) for p, shape in followers}

    def masks_of(xs):
        return rule.masks({**{p: x.reshape(shape) for (p, shape), x in zip(kernels, xs)}, **zeros})

    def project(xs):
        masks = masks_of(xs)
        return tuple(x * masks[p].reshape(x.shape) for (p, _), x in zip(kernels, xs))

    _, _, zs, supports, _ = iterate(matrices, hs, rho, project, max_iterations)
    fitted = tuple(refit(m, s, h, refit_iterations) for m, s, h in zip(matrices, supports, hs))
    return fitted, masks_of(zs)
