"""prunax's one-shot solver: ADMM on the layer problem over any constraint, then a least-squares
refit on the support (ALPS, Meng et al., NeurIPS 2024, for ℓ0; docs/oneshot.md, "ADMM").

With H the damped Gram matrix, the problem

    min_Ŵ ½ tr((W − Ŵ)ᵀ H (W − Ŵ))  subject to  Ŵ in the constraint's set

is solved in the variables D^½Ŵ, D = diag H, where the Gram matrix D^-½ H D^-½ has a unit
diagonal (so ρ is scale-free and the projection ranks weights by |W_ij|·sqrt(H_jj), Wanda's
score): every set of the algebra is a family of supports and signs, unchanged by a positive
scaling of the input rows, so the projection there is exact. Below, H and W are the scaled ones.
It is split as Ŵ = Z with Z in the set. Each iteration

    Ŵ ← (H + ρI)⁻¹ (H W + ρ (Z − U))   (one eigendecomposition H = QΛQᵀ serves every ρ)
    Z ← Π(Ŵ + U)                         (the constraint's exact projection)
    U ← U + Ŵ − Z

Every 3 iterations ρ grows ×1.3 if the support of Z changed in more than 10 % of the kept
entries since the last check, ×1.2 if in more than 0.5 % (at most 1e6, ALPS's schedule); the
loop stops once the change is below 3e-4 of the kept entries after at least 30 iterations.
The refit then solves the least-squares problem on Z's support by preconditioned conjugate
gradients (Jacobi), column by column in one batched loop.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from prunax.constraints import Constraint

from ._calibration import Gram, as_matrix, damped


class LayerADMMInfo(NamedTuple):
    """What the ADMM run did: iterations, the final ρ and the last support change (entries)."""

    iterations: int
    rho: float
    support_change: int


def refit(w, mask, h, iterations: int) -> jax.Array:
    """argmin over V with V = 0 off ``mask`` of ½ tr((W − V)ᵀ H (W − V)), by ``iterations`` steps
    of Jacobi-preconditioned conjugate gradients from V = W·mask (exact in at most the largest
    column support's number of steps, in exact arithmetic). W, mask: (inputs, outputs)."""
    mask = mask.astype(w.dtype)
    target = h @ w
    precondition = 1.0 / jnp.diag(h)[:, None]

    def dot(a, b):
        return jnp.sum(a * b, axis=0)

    v = w * mask
    r = mask * (target - h @ v)
    z = precondition * r
    p = z

    def step(_, carry):
        v, r, z, p = carry
        hp = mask * (h @ p)
        rz, php = dot(r, z), dot(p, hp)
        alpha = jnp.where(php > 0, rz / jnp.where(php > 0, php, 1), 0)
        v = v + alpha * p
        r_next = r - alpha * hp
        z_next = precondition * r_next
        beta = jnp.where(rz > 0, dot(r_next, z_next) / jnp.where(rz > 0, rz, 1), 0)
        return v, r_next, z_next, z_next + beta * p

    v, *_ = lax.fori_loop(0, iterations, step, (v, r, z, p))
    return v * mask


def iterate(matrices: tuple, hs: tuple, rho, project, max_iterations: int):
    """The ADMM loop of the module docstring over one or more layers that share a projection
    (``project``: a tuple of (inputs, outputs) matrices -> the tuple in the set; several layers:
    a coupled group's kernels). Returns (iterations, final ρ, Z, Z's support at the last check,
    the last support change). Traceable; the support change is summed over the layers."""
    decompositions = [jnp.linalg.eigh(h) for h in hs]
    hws = [h @ m for h, m in zip(hs, matrices)]
    total = sum(m.size for m in matrices)

    def w_update(zs, us, rho):
        return tuple(
            q @ ((q.T @ (hw + rho * (z - u))) / (eigenvalues + rho)[:, None])
            for (eigenvalues, q), hw, z, u in zip(decompositions, hws, zs, us)
        )

    def count(masks):
        return sum(jnp.sum(m).astype(jnp.int32) for m in masks)

    z0 = project(matrices)
    zeros = tuple(jnp.zeros_like(m) for m in matrices)
    state = (0, rho, z0, zeros, tuple(z != 0 for z in z0), jnp.int32(total))

    def cond(state):
        i, _, _, _, support, change = state
        kept = jnp.maximum(count(support), 1)
        settled = (i >= 30) & (change.astype(jnp.float32) < 3e-4 * kept.astype(jnp.float32))
        return (i < max_iterations) & ~settled

    def body(state):
        i, rho, zs, us, support, change = state
        w_hat = w_update(zs, us, rho)
        zs = project(tuple(w + u for w, u in zip(w_hat, us)))
        us = tuple(u + w - z for u, w, z in zip(us, w_hat, zs))
        i = i + 1
        check = i % 3 == 0
        new_support = tuple(z != 0 for z in zs)
        moved = count(tuple(a != b for a, b in zip(new_support, support)))
        kept = jnp.maximum(count(new_support), 1).astype(jnp.float32)
        growth = jnp.where(moved > 0.1 * kept, 1.3, jnp.where(moved > 0.005 * kept, 1.2, 1.0))
        rho_next = jnp.where(check, jnp.minimum(rho * growth, 1e6), rho)
        us = tuple(u * (rho / rho_next) for u in us)  # the scaled dual follows ρ: ρU, the multiplier, is kept
        support = tuple(jnp.where(check, n, o) for n, o in zip(new_support, support))
        return i, rho_next, zs, us, support, jnp.where(check, moved, change)

    i, rho, zs, _, support, change = lax.while_loop(cond, body, state)
    return i, rho, zs, support, change


@partial(jax.jit, static_argnames=("constraint", "shape", "max_iterations", "refit_iterations"))
def _solve(matrix, h, rho, *, constraint, shape, max_iterations, refit_iterations):
    def project(xs):
        return (constraint.project(xs[0].reshape(shape)).reshape(matrix.shape),)

    i, rho, (z,), (support,), change = iterate((matrix,), (h,), rho, project, max_iterations)
    fitted = refit(matrix, support, h, refit_iterations)
    if constraint.fixes_signs:  # least squares may flip a kept weight across its fragment's side
        fitted = jnp.where(jnp.sign(fitted) == jnp.sign(z), fitted, 0)
    return project((fitted,))[0], (i, rho, change)


def check_settings(path: str, rho, max_iterations, refit_iterations) -> None:
    """ValueError naming the layer unless the ADMM settings are valid."""
    for name, value in (("max_iterations", max_iterations), ("refit_iterations", refit_iterations)):
        if not (isinstance(value, int) and value >= 0):
            raise ValueError(f"layer {path!r}: admm {name} must be an int >= 0, got {value!r}")
    if not (isinstance(rho, (int, float)) and rho > 0):
        raise ValueError(f"layer {path!r}: admm rho must be a number > 0, got {rho!r}")


def unit_diagonal(matrix, h):
    """(D^½W, D^-½HD^-½, D^½) for D = diag H: the variables in which H has a unit diagonal."""
    scale = jnp.sqrt(jnp.diag(h))
    return matrix * scale[:, None], h / scale[:, None] / scale[None, :], scale


def admm(
    w,
    gram: Gram,
    constraint: Constraint,
    path: str = "<layer>",
    damping: float = 0.01,
    rho: float = 0.1,
    max_iterations: int = 300,
    refit_iterations: int = 20,
    with_info: bool = False,
):
    """The ADMM-pruned, refitted kernel (same shape and dtype as ``w``); with ``with_info`` also a
    ``LayerADMMInfo``. ``rho`` is the starting penalty relative to the mean diagonal of H."""
    w = jnp.asarray(w)
    constraint.check(w.shape, w.dtype, path)
    matrix = as_matrix(w, gram, path).astype(jnp.float32)
    check_settings(path, rho, max_iterations, refit_iterations)
    scaled, h, scale = unit_diagonal(matrix, damped(gram, damping, path))
    fitted, (iterations, final_rho, change) = _solve(
        scaled,
        h,
        jnp.float32(rho),
        constraint=constraint,
        shape=tuple(w.shape),
        max_iterations=max_iterations,
        refit_iterations=refit_iterations,
    )
    out = (fitted / scale[:, None]).reshape(w.shape).astype(w.dtype)
    if with_info:
        return out, LayerADMMInfo(int(iterations), float(final_rho), int(change))
    return out
