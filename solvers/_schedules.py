"""Schedules as optax schedules of the step count (docs/solvers.md, "The epoch loop")."""

from __future__ import annotations

import jax.numpy as jnp
import optax


def _check_steps(name: str, begin_step: int, end_step: int, every: int) -> None:
    if not 0 <= begin_step < end_step:
        raise ValueError(f"{name}: need 0 <= begin_step < end_step, got {begin_step}, {end_step}")
    if every <= 0:
        raise ValueError(f"{name}: every must be positive, got {every}")


def cubic_fraction(begin_step: int, end_step: int, every: int = 1):
    """The Zhu & Gupta (arXiv 1710.01878) ramp from 0 to 1:

        f(t) = 1 - (1 - (t' - t0) / (t1 - t0))**3,  t' = t0 + floor((t - t0) / every) * every

    0 before ``begin_step`` (t0), 1 from ``end_step`` (t1) on; with ``every`` > 1 it changes only
    every ``every`` steps (one mask update per change) and the last change lands exactly on 1 at t1.
    ``solvers.magnitude(spec, cubic_fraction(...))`` prunes gradually to the spec's sparsities.
    """
    _check_steps("cubic_fraction", begin_step, end_step, every)

    def schedule(count):
        t = jnp.clip(jnp.asarray(count, jnp.float32), begin_step, end_step)
        t = jnp.where(t >= end_step, end_step, begin_step + jnp.floor((t - begin_step) / every) * every)
        progress = (t - begin_step) / (end_step - begin_step)
        return 1.0 - (1.0 - progress) ** 3

    return schedule


def cubic_sparsity(final: float, begin_step: int, end_step: int, initial: float = 0.0, every: int = 1):
    """Zhu & Gupta's sparsity s(t) = s_f + (s_i - s_f)(1 - progress)**3, i.e.
    s_i + (s_f - s_i) * cubic_fraction(t): s_i before ``begin_step``, s_f from ``end_step`` on."""
    if not 0.0 <= initial <= final < 1.0:
        raise ValueError(
            f"cubic_sparsity: need 0 <= initial <= final < 1, got initial={initial}, final={final}"
        )
    _check_steps("cubic_sparsity", begin_step, end_step, every)
    fraction = cubic_fraction(begin_step, end_step, every)
    return lambda count: initial + (final - initial) * fraction(count)


def geometric(value: float, factor: float, every: int, maximum: float | None = None):
    """value * factor**floor(t / every), capped at ``maximum``: the ρ growth of ADMM codes
    (×1.3 per Z/U update in yeshaokai's ``multi_rho``)."""
    if value <= 0 or factor <= 0 or every <= 0:
        raise ValueError(
            f"geometric: value, factor and every must be positive, got {value}, {factor}, {every}"
        )
    return optax.exponential_decay(value, every, factor, staircase=True, end_value=maximum)


def restarts(schedule, boundaries):
    """``schedule`` restarted from its step 0 at every boundary (learning-rate restarts at stage
    boundaries: the ADMM codes' per-Z-update LR reset, SPD's restart at its peak)."""
    boundaries = list(boundaries)
    if any(b <= 0 for b in boundaries) or boundaries != sorted(set(boundaries)):
        raise ValueError(f"restarts: boundaries must be increasing positive steps, got {boundaries}")
    return optax.join_schedules([schedule] * (len(boundaries) + 1), boundaries)
