"""On 8 forced host devices: every constraint family and global budget gives on sharded leaves
exactly the mask it gives on one device, eager and jitted, and no leaf is gathered whole.

Collected only by ``test_forced_devices.py``, which runs this module in a subprocess started
with ``--xla_force_host_platform_device_count=8`` (the device count is fixed at JAX start-up).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from prunax import solvers
from prunax.constraints import (
    NM,
    Block,
    ColumnSign,
    Pattern,
    Unstructured,
    coupled,
    global_,
    mine_patterns,
    spec,
    top_k_mask,
)
from tests.sharding.hlo import DEVICES, compiled_without_gathers, place

pytestmark = pytest.mark.skipif(jax.device_count() < DEVICES, reason="needs 8 (forced host) devices")

ROWS, COLUMNS = 256, 512


def _matrix(kind: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((ROWS, COLUMNS))
    if kind == "ties":  # one decimal: every kept count cuts through a large tie group
        w = np.round(w, 1)
    if kind == "sparse":  # 60 % exact zeros: a low sparsity cuts through the ties of 0
        w = np.where(rng.random(w.shape) < 0.6, 0.0, w)
    return w.astype(np.float32)


_TILE_PATTERNS = mine_patterns(_matrix("gauss", 7)[:64, :64], (0, 1), (4, 4), 8, 6)

FAMILIES = {
    "unstructured 0.9": (Unstructured(0.9), "gauss"),
    "unstructured 0.5 ties": (Unstructured(0.5), "ties"),
    "unstructured 0.3 zeros": (Unstructured(0.3), "sparse"),
    "2:4": (NM(2, 4, axis=1), "gauss"),
    "rows 0.75": (Block((1,), 0.75, axes=(0,)), "ties"),
    "16x16 tiles 0.6": (Block((16, 16), 0.6, axes=(0, 1)), "gauss"),
    "column sign f=8": (ColumnSign(8, axis=0), "gauss"),
    "4x4 tile patterns": (Pattern(_TILE_PATTERNS, axes=(0, 1), tiles=True, connectivity=0.3), "gauss"),
    "rows & unstructured": (Block((1,), 0.5, axes=(0,)) & Unstructured(0.9), "ties"),
}


@pytest.mark.parametrize("sharding", ("rows", "columns", "grid"))  # replicated: in the budgets
@pytest.mark.parametrize("family", FAMILIES)
def test_matrix_masks_equal_one_device(family, sharding):
    constraint, kind = FAMILIES[family]
    host = _matrix(kind)
    expected = np.asarray(constraint.mask(jnp.asarray(host)))
    w = place(host, sharding)
    if family.startswith("unstructured"):  # eager dispatch on shards is slow; once is enough
        np.testing.assert_array_equal(np.asarray(constraint.mask(w)), expected, err_msg="eager")
    np.testing.assert_array_equal(np.asarray(jax.jit(constraint.mask)(w)), expected, err_msg="jitted")
    project = compiled_without_gathers(constraint.project, w, shard_elements=host.size // DEVICES)
    np.testing.assert_array_equal(np.asarray(project(w)), np.where(expected, host, 0))


CONV_SHARDINGS = {"outputs": ("line", P(None, None, None, "x")), "inputs": ("line", P(None, None, "x", None))}


@pytest.mark.parametrize("sharding", CONV_SHARDINGS)
def test_kernel_patterns_and_conv_leaves(sharding):
    host = np.random.default_rng(3).standard_normal((3, 3, 64, 64)).astype(np.float32)
    patterns = mine_patterns(host[..., :16], (0, 1), (3, 3), 4, 8, always=((1, 1),))
    w = place(host, sharding, CONV_SHARDINGS)
    for constraint in (
        Pattern(patterns, axes=(0, 1), connectivity=0.5),
        Unstructured(0.8),
        ColumnSign(8, axis=2),
    ):
        expected = np.asarray(constraint.mask(jnp.asarray(host)))
        mask = compiled_without_gathers(constraint.mask, w, shard_elements=host.size // DEVICES)
        np.testing.assert_array_equal(np.asarray(mask(w)), expected, err_msg=repr(constraint))


def test_traced_ramp_matches_one_device():
    """Gradual pruning's traced scale (k traced) on a sharded leaf, in one compile."""
    host = _matrix("ties", 4)
    w = place(host, "columns")
    ramp = jax.jit(lambda w, scale: Unstructured(0.9).mask(w, scale=scale))
    for scale in (0.0, 0.3, 1.0):
        expected = np.asarray(Unstructured(0.9).mask(jnp.asarray(host), scale=scale))
        np.testing.assert_array_equal(np.asarray(ramp(w, jnp.float32(scale))), expected)
    assert ramp._cache_size() == 1


def _model(seed: int = 5):
    """Three leaves sharded three ways: by rows, by columns, and replicated."""
    rng = np.random.default_rng(seed)
    host = {
        "a/kernel": np.round(rng.standard_normal((ROWS, COLUMNS)), 2).astype(np.float32),
        "b/kernel": (3 * rng.standard_normal((COLUMNS, ROWS))).astype(np.float32),
        "c/bias": rng.standard_normal(300).astype(np.float32),
    }
    sharded = {
        "a/kernel": place(host["a/kernel"], "rows"),
        "b/kernel": place(host["b/kernel"], "columns"),
        "c/bias": place(host["c/bias"], "replicated"),
    }
    return host, sharded


BUDGETS = {
    "unstructured": lambda: spec([global_(Unstructured(0.8), include=".")]),
    "unstructured rms": lambda: spec([global_(Unstructured(0.8), include=".", normalize="rms")]),
    "rows": lambda: spec([global_(Block((1,), 0.7, axes=(0,)), include="kernel")]),
    "coupled channels": lambda: spec([coupled(0.5, {"hidden": [("a/kernel", 1), ("b/kernel", 0)]})]),
}


@pytest.mark.parametrize("budget", BUDGETS)
def test_budgets_across_leaves_sharded_differently(budget):
    rules = BUDGETS[budget]()
    host, sharded = _model()
    expected = rules.mask(jax.tree_util.tree_map(jnp.asarray, host))
    jitted = compiled_without_gathers(rules.mask, sharded, shard_elements=ROWS * COLUMNS // DEVICES)
    for name, masks in (("eager", rules.mask(sharded)), ("jitted", jitted(sharded))):
        for path in host:
            np.testing.assert_array_equal(
                np.asarray(masks[path]), np.asarray(expected[path]), err_msg=f"{name} {path}"
            )


def test_top_k_kernel_keeps_shardings():
    """The mask comes back sharded like the scores: the final pass runs on the shards."""
    for sharding in ("rows", "columns", "grid"):
        w = place(_matrix("gauss"), sharding)
        mask = jax.jit(lambda w: top_k_mask(w, 1000, magnitude=True))(w)
        assert mask.sharding.is_equivalent_to(w.sharding, 2), sharding


def test_admm_z_update_runs_sharded():
    """ADMM's Z-update (the projection of W + U) on sharded parameters: the same Z as on one
    device, Z sharded like W, and no parameter gathered."""
    host, sharded = _model(6)
    rules = spec([("kernel", Unstructured(0.9)), global_(Unstructured(0.5), include="bias")])
    tx = solvers.admm(rules, rho=1e-2, every=1)
    grads_host = jax.tree_util.tree_map(lambda x: np.full_like(x, 0.01), host)
    one = jax.jit(tx.update)(
        jax.tree_util.tree_map(jnp.asarray, grads_host),
        tx.init(jax.tree_util.tree_map(jnp.asarray, host)),
        jax.tree_util.tree_map(jnp.asarray, host),
    )[1]
    grads = jax.tree_util.tree_map(lambda g, w: jax.device_put(g, w.sharding), grads_host, sharded)
    state = tx.init(sharded)
    update = compiled_without_gathers(
        tx.update, grads, state, sharded, shard_elements=ROWS * COLUMNS // DEVICES
    )
    many = update(grads, state, sharded)[1]
    for path in ("a/kernel", "b/kernel", "c/bias"):
        np.testing.assert_array_equal(np.asarray(many.z[path]), np.asarray(one.z[path]), err_msg=path)
    assert many.z["b/kernel"].sharding.is_equivalent_to(sharded["b/kernel"].sharding, 2)
