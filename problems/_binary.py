"""Binarization with a straight-through estimator (Courbariaux et al. 2016; Bengio et al. 2013)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def ste_sign(u, zero_is_zero: bool, clip: bool = True):
    """sign(u) forwards; backwards the gradient of clip(u, −1, 1) (1 where |u| ≤ 1, the hard-tanh
    STE) or, with ``clip=False``, the identity. ``zero_is_zero``: sign(0) = 0, so a pruned (zero)
    weight stays a ternary zero; else sign(0) = +1 (activations are always ±1)."""
    hard = jnp.sign(u) if zero_is_zero else jnp.where(u >= 0, 1.0, -1.0).astype(u.dtype)
    soft = jnp.clip(u, -1.0, 1.0) if clip else u
    return soft + jax.lax.stop_gradient(hard - soft)
