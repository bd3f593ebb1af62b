"""Magnitude pruning: one-shot equals the hard prune, the cubic ramp hits its counts, masks stick."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prunax import solvers
from prunax.constraints import NM, Block, Unstructured, kept_count, spec

SPEC = spec([("dense", Unstructured(0.8)), ("conv", Block((1,), 0.5, axes=(1,)) & NM(2, 4, axis=0))])


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "dense": jnp.asarray(rng.standard_normal((20, 10)), jnp.float32),
        "conv": jnp.asarray(rng.standard_normal((8, 6)), jnp.float32),
    }


def test_one_shot_equals_finalize_of_the_stepped_weights():
    params = _params()
    tx = solvers.magnitude(SPEC)
    state = tx.init(params)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    updates, state = tx.update(grads, state, params)
    stepped = jax.tree_util.tree_map(lambda w, g: w + g, params, grads)
    expected, _ = solvers.finalize(SPEC, stepped)
    got = optax.apply_updates(params, updates)
    jax.tree_util.tree_map(np.testing.assert_array_equal, got, expected)
    assert bool(state.frozen)


def test_cubic_ramp_prunes_the_scheduled_fraction_and_pruned_weights_stay_zero():
    params = _params()
    schedule = solvers.cubic_fraction(begin_step=2, end_step=20, every=3)
    tx = optax.chain(optax.adamw(0.05, weight_decay=0.1), solvers.magnitude(SPEC, schedule))
    state = tx.init(params)
    rng = np.random.default_rng(1)
    step = jax.jit(tx.update)
    dead = np.zeros(200, bool)
    for t in range(30):
        grads = jax.tree_util.tree_map(
            lambda w: jnp.asarray(rng.standard_normal(w.shape), jnp.float32), params
        )
        updates, state = step(grads, state, params)
        params = optax.apply_updates(params, updates)
        dense = np.asarray(params["dense"]).reshape(-1)
        fraction = float(schedule(t))
        assert int(np.sum(dense != 0)) == int(kept_count(200, 0.8, fraction)), t
        assert not (dense[dead] != 0).any(), t  # once pruned, pruned for good (ramp is monotone)
        dead |= dense == 0
    assert step._cache_size() == 1
    assert bool(SPEC.is_feasible(params)) and bool(state[1].frozen)


def test_schedule_must_be_callable():
    with pytest.raises(ValueError, match="magnitude: schedule"):
        solvers.magnitude(SPEC, 0.5)
