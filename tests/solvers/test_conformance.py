"""One conformance file for every solver (docs/conventions.md): jit-able init/update, a state whose tree
and dtypes never change, one compile over many steps, and composition with optax.chain,
optax.MultiSteps and optax.inject_hyperparams; extra args are accepted."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prunax import solvers
from prunax.constraints import Block, Unstructured, spec

SPEC = spec(
    [
        (r"conv/kernel$", Block((1,), 0.5, axes=(3,))),
        (r"dense/kernel$", Unstructured(0.75)),
        (r"bias$", None),
    ]
)
LR = 1e-2

# name -> (factory, keyword arguments, where it goes: "first" or "last" in a chain with Adam, or
# "wraps" Adam as its inner optimizer)
SOLVERS = {
    "admm_decoupled": (solvers.admm, dict(every=3, updates=4), "wraps"),
    "slr_decoupled": (solvers.slr, dict(rho=0.1, every=3, updates=4), "wraps"),
    "admm": (solvers.admm, dict(rho=0.1, every=3, rho_growth=1.3, rescale_dual=True), "first"),
    "slr": (solvers.slr, dict(rho=0.1, every=3), "first"),
    "slr_code": (solvers.slr, dict(every=3, soc2="code"), "first"),
    "rgl": (solvers.reweighted_group_lasso, dict(lam=1e-3, reweight_every=4), "first"),
    "rgl_prox": (solvers.reweighted_group_lasso, dict(lam=1e-3, prox=True, learning_rate=LR), "last"),
    "magnitude": (solvers.magnitude, dict(schedule=solvers.cubic_fraction(0, 8, every=2)), "last"),
    "magnitude_oneshot": (solvers.magnitude, dict(), "last"),
}


def _params():
    rng = np.random.default_rng(0)
    return {
        "conv": {"kernel": jnp.asarray(rng.standard_normal((3, 3, 4, 8)), jnp.float32), "bias": jnp.ones(8)},
        "dense": {"kernel": jnp.asarray(rng.standard_normal((8, 4)), jnp.float32)},
    }


def _loss(params, x):
    h = jnp.einsum("bhwc,hwcd->bd", x, params["conv"]["kernel"]) + params["conv"]["bias"]
    return jnp.mean(jnp.square(jnp.tanh(h) @ params["dense"]["kernel"] - 1.0))


def _chain(name, **overrides):
    factory, kwargs, where = SOLVERS[name]
    if where == "wraps":
        return optax.chain(factory(SPEC, **(kwargs | overrides), inner=optax.adam(LR)))
    solver = factory(SPEC, **(kwargs | overrides))
    return optax.chain(solver, optax.adam(LR)) if where == "first" else optax.chain(optax.adam(LR), solver)


def _solver_state(name, chain_state):
    """The solver's own state inside the state of ``_chain(name)``."""
    where = SOLVERS[name][2]
    if where == "wraps":
        return chain_state[0].solver
    return chain_state[0] if where == "first" else chain_state[1]


def _signature(state):
    return [(jnp.shape(a), jnp.result_type(a)) for a in jax.tree_util.tree_leaves(state)]


def _run(tx, steps=12):
    params = _params()
    x = jnp.asarray(np.random.default_rng(1).standard_normal((5, 3, 3, 4)), jnp.float32)

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(_loss)(params, x)
        updates, state = tx.update(grads, state, params, value=value, unused_extra=1.0)
        return optax.apply_updates(params, updates), state

    state = jax.jit(tx.init)(params)
    structure, signature = jax.tree_util.tree_structure(state), _signature(state)
    for _ in range(steps):
        params, state = step(params, state)
        assert jax.tree_util.tree_structure(state) == structure
        assert _signature(state) == signature
    return params, state, step


@pytest.mark.parametrize("name", SOLVERS)
def test_jit_stable_state_and_one_compile(name):
    params, state, step = _run(_chain(name))
    assert step._cache_size() == 1
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(params))
    inner = _solver_state(name, state)
    assert int(inner.count) == 12 and not bool(inner.nonfinite)


@pytest.mark.parametrize("name", SOLVERS)
def test_inside_multisteps(name):
    params, state, step = _run(optax.MultiSteps(_chain(name), every_k_schedule=2), steps=8)
    assert step._cache_size() == 1
    assert int(state.gradient_step) == 4


@pytest.mark.parametrize("name", ["admm", "slr", "rgl", "rgl_prox", "admm_decoupled", "slr_decoupled"])
def test_inside_inject_hyperparams(name):
    factory, kwargs, where = SOLVERS[name]
    static = ("every", "reweight_every", "rho_growth", "rescale_dual", "soc2", "prox", "updates")
    if where == "wraps":
        kwargs = kwargs | dict(inner=optax.adam(LR))
    injected = optax.inject_hyperparams(factory, static_args=tuple(k for k in kwargs if k in static))(
        SPEC, **kwargs
    )
    if where == "wraps":
        tx = optax.chain(injected)
    else:
        tx = (
            optax.chain(injected, optax.adam(LR))
            if where == "first"
            else optax.chain(optax.adam(LR), injected)
        )
    _, state, step = _run(tx)
    assert step._cache_size() == 1
    hyper = (state[1] if where == "last" else state[0]).hyperparams
    assert set(hyper) >= {k for k in kwargs if k not in static and k != "inner"}


def test_magnitude_masks_are_feasible_after_the_ramp_and_solvers_move_towards_the_set():
    params, state, _ = _run(_chain("magnitude"))
    assert bool(SPEC.is_feasible(params)) and bool(state[1].frozen)
    _, admm_state, _ = _run(_chain("admm"), steps=30)
    assert int(admm_state[0].updates) == 9  # at steps 3, 6, ..., 27
    assert float(admm_state[0].rho) == pytest.approx(0.1 * 1.3**9, rel=1e-5)
    for name in ("admm_decoupled", "slr_decoupled"):  # the pull reaches 1 after its 4 updates
        params, state, _ = _run(_chain(name), steps=30)
        assert int(_solver_state(name, state).updates) == 9
        assert float(_solver_state(name, state).residual_total) < 0.05


@pytest.mark.parametrize("name", SOLVERS)
def test_non_finite_gradient_sets_the_flag_and_leaves_the_solver_variables(name):
    tx = _chain(name)
    params = _params()
    state = tx.init(params)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    update = jax.jit(tx.update)
    due = dict(admm=3, slr=3, slr_code=3, rgl=4, rgl_prox=2, magnitude=4, magnitude_oneshot=0)
    due |= dict(admm_decoupled=3, slr_decoupled=3)
    for _ in range(due[name]):  # the next step is one with periodic work (a Z, multiplier, mask update)
        _, state = update(zeros, state, params, value=1.0)
    bad = jax.tree_util.tree_map(lambda g: g.at[(0,) * g.ndim].set(jnp.nan), zeros)
    _, after = update(bad, state, params, value=1.0)
    before, after = _solver_state(name, state), _solver_state(name, after)
    assert bool(after.nonfinite) and not bool(before.nonfinite)
    for field in ("z", "u", "updates", "masks", "fraction", "alpha", "step_size", "k", "loss_sum"):
        if field in before._fields:
            same = np.testing.assert_array_equal
            jax.tree_util.tree_map(same, getattr(after, field), getattr(before, field))
