"""Schedules as optax schedules of the step count (DESIGN §3.6)."""

from __future__ import annotations

import jax.numpy as jnp


def cubic_sparsity(final: float, begin_step: int, end_step: int, initial: float = 0.0, every: int = 1):
    """Zhu & Gupta (arXiv 1710.01878) gradual pruning: the sparsity at step t is

        s(t) = s_f + (s_i - s_f) * (1 - (t' - t0) / (t1 - t0))**3,  t' = t0 + floor((t - t0) / every) * every

    clamped to s_i before ``begin_step`` (t0) and to s_f from ``end_step`` (t1) on. With
    ``every`` > 1 the sparsity changes only every ``every`` steps (one mask update per change);
    the last change lands exactly on s_f at t1 (no rounding shortfall).
    """
    if not 0.0 <= initial <= final < 1.0:
        raise ValueError(
            f"cubic_sparsity: need 0 <= initial <= final < 1, got initial={initial}, final={final}"
        )
    if not 0 <= begin_step < end_step:
        raise ValueError(f"cubic_sparsity: need 0 <= begin_step < end_step, got {begin_step}, {end_step}")
    if every <= 0:
        raise ValueError(f"cubic_sparsity: every must be positive, got {every}")

    def schedule(count):
        t = jnp.clip(jnp.asarray(count, jnp.float32), begin_step, end_step)
        t = jnp.where(t >= end_step, end_step, begin_step + jnp.floor((t - begin_step) / every) * every)
        progress = (t - begin_step) / (end_step - begin_step)
        return final + (initial - final) * (1.0 - progress) ** 3

    return schedule
