"""Magnitude pruning through a spec, one-shot or gradual (Zhu & Gupta, arXiv 1710.01878): the
baseline the seed papers and JaxPruner compare against.

The transform goes **last** in the chain, after the optimizer (like ``keep_masked``): it sees the
proposed post-step weights W⁺ = W + u, recomputes the masks from them whenever the schedule's
value changes, and returns ``where(mask, u, −W)`` so that pruned weights land on exactly 0 whatever
momentum or weight decay proposed. ``schedule(count)`` is the fraction in [0, 1] of every
constraint's sparsity to apply at that step (``Spec.mask(..., scale=f)``; N:M, patterns and
polarity apply in full); None means 1 from the first step (one-shot). Once the masks were computed
at fraction 1 they are frozen. ``solvers.cubic_fraction`` is the Zhu & Gupta ramp.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from prunax.constraints import Spec

from ._leaves import Layout, hyper, inputs_finite, require_params


class MagnitudeState(NamedTuple):
    count: jax.Array  # int32: steps taken
    masks: Any  # bool per constrained leaf (MaskedNode elsewhere): True = kept
    fraction: jax.Array  # float32: the schedule value the masks were computed at (-1 before any)
    frozen: jax.Array  # bool: masks computed at fraction 1, no more updates
    nonfinite: jax.Array  # bool, sticky: a non-finite update was seen (masks left untouched)


def magnitude(spec: Spec, schedule=None) -> optax.GradientTransformationExtraArgs:
    """Magnitude pruning to ``spec``, ramped by ``schedule`` (see the module docstring)."""
    if schedule is not None and not callable(schedule):
        raise ValueError(
            f"magnitude: schedule must be None or a function of the step count, got {schedule!r}"
        )

    def init(params):
        layout = Layout.of(spec, params, "magnitude")
        return MagnitudeState(
            count=jnp.int32(0),
            masks=layout.build([jnp.ones(jnp.shape(x), bool) for x in layout.pick(params)]),
            fraction=jnp.float32(-1),
            frozen=jnp.asarray(False),
            nonfinite=jnp.asarray(False),
        )

    def update(updates, state, params=None, **extra_args):
        require_params("magnitude", params)
        layout = Layout.of(spec, params, "magnitude")
        w, u = layout.pick(params), layout.pick(updates)
        ok = inputs_finite(u, extra_args)
        fraction = jnp.float32(1) if schedule is None else jnp.clip(hyper(schedule, state.count), 0.0, 1.0)
        run = ok & ~state.frozen & (fraction != state.fraction)

        def recompute():
            stepped = layout.replace(params, [a + b for a, b in zip(w, u)])
            return layout.pick(spec.mask(stepped, scale=fraction)), fraction

        masks, applied = lax.cond(run, recompute, lambda: (layout.pick(state.masks), state.fraction))
        out = [jnp.where(m, b, -a).astype(b.dtype) for m, a, b in zip(masks, w, u)]
        new_state = MagnitudeState(
            count=state.count + 1,
            masks=layout.build(masks),
            fraction=applied,
            frozen=state.frozen | (applied >= 1),
            nonfinite=state.nonfinite | ~ok,
        )
        return layout.replace(updates, out), new_state

    return optax.GradientTransformationExtraArgs(init, update)
