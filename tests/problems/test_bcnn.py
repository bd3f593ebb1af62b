"""The bcnn problem: complex arithmetic, complex BN, binarization, filter removal and the RF data."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prunax import problems, solvers
from prunax.problems import bcnn
from prunax.problems._binary import ste_sign
from prunax.problems.bcnn import signals as rf_signals


@pytest.fixture(scope="module")
def problem():
    return problems.get("bcnn", "test")


def test_protocol_on_the_test_size(problem):
    params, state = problem.init(jax.random.key(0))
    batch = next(problem.batches("train", jax.random.key(1), 32))
    assert batch["x"].shape == (32, 128, 2) and batch["y"].dtype == np.int32
    loss, (new_state, logs) = jax.jit(problem.loss)(params, state, batch, jax.random.key(2))
    assert np.isfinite(float(loss)) and 0 <= float(logs["accuracy"]) <= 1
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    metrics = problem.evaluate(params, state)
    assert 0 <= metrics["accuracy"] <= 1 and metrics["binary_ops"] == metrics["binary_ops_dense"] > 0
    assert re.search(problem.prunable, "block1/conv/kernel") and not re.search(
        problem.prunable, "stem/kernel"
    )


def test_complex_conv_is_complex_cross_correlation():
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 2, 4, 2)).astype(np.float32)
    z = (rng.standard_normal((1, 10, 2)) + 1j * rng.standard_normal((1, 10, 2))).astype(np.complex64)
    re, im = bcnn.complex_conv(jnp.asarray(z.real), jnp.asarray(z.imag), jnp.asarray(kernel))
    w = kernel[..., 0] + 1j * kernel[..., 1]
    padded = np.pad(z[0], ((1, 1), (0, 0)))
    expected = np.array([[np.sum(w[:, :, o] * padded[t : t + 3]) for o in range(4)] for t in range(10)])
    np.testing.assert_allclose(np.asarray(re[0]) + 1j * np.asarray(im[0]), expected, atol=1e-5)


def test_complex_batch_norm_whitens_and_keeps_running_statistics():
    rng = np.random.default_rng(1)
    # correlated, shifted real and imaginary parts per channel
    a = rng.standard_normal((64, 20, 3))
    re = jnp.asarray(2.0 * a + 1.0, jnp.float32)
    im = jnp.asarray(0.8 * a + 0.3 * rng.standard_normal(a.shape) - 2.0, jnp.float32)
    norm = bcnn.ComplexBatchNorm()
    variables = norm.init(jax.random.key(0), re, im, train=True)
    (yr, yi), updated = norm.apply(variables, re, im, train=True, mutable=["batch_stats"])
    for c in range(3):
        pair = np.stack([np.ravel(yr[..., c]), np.ravel(yi[..., c])])
        np.testing.assert_allclose(pair.mean(1), 0, atol=1e-5)
        np.testing.assert_allclose(np.cov(pair, bias=True), 0.5 * np.eye(2), atol=1e-3)  # Γ = I/√2
    stats = updated["batch_stats"]
    np.testing.assert_allclose(stats["mean"][0], 0.1 * np.asarray(re.mean((0, 1))), rtol=1e-5)
    # eval uses the running statistics, not the batch's
    (er, _) = norm.apply({**variables, **updated}, re, im, train=False)
    assert not np.allclose(er, yr, atol=1e-2)


def test_sign_is_ternary_for_weights_binary_for_activations_with_a_hard_tanh_gradient():
    u = jnp.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_array_equal(ste_sign(u, zero_is_zero=True), [-1, -1, 0, 1, 1])
    np.testing.assert_array_equal(ste_sign(u, zero_is_zero=False), [-1, -1, 1, 1, 1])
    grad = jax.grad(lambda v: jnp.sum(ste_sign(v, zero_is_zero=False) * jnp.arange(5.0)))(u)
    np.testing.assert_array_equal(grad, [0, 1, 2, 3, 0])
    np.testing.assert_array_equal(jax.grad(lambda v: ste_sign(v, True, clip=False).sum())(u), np.ones(5))


def test_filter_pruning_removes_whole_complex_filters_and_their_operations(problem):
    params, state = problem.init(jax.random.key(0))
    pruned, _ = solvers.finalize(problem.groups["filter"](0.5), params)
    kernel = np.asarray(pruned["block1"]["conv"]["kernel"])
    alive = np.abs(kernel).sum(axis=(0, 1, 3)) > 0
    assert alive.sum() == kernel.shape[2] // 2
    # both halves of a complex filter go together
    np.testing.assert_array_equal(np.abs(kernel[..., 0]).sum((0, 1)) > 0, alive)
    np.testing.assert_array_equal(np.abs(kernel[..., 1]).sum((0, 1)) > 0, alive)
    ops = bcnn.binary_operations(pruned, 128)
    # block1 keeps half its filters; block2 half its filters, and of those half the input channels
    k1, k2 = params["block1"]["conv"]["kernel"].size, params["block2"]["conv"]["kernel"].size
    assert ops["dense"] == k1 * 2 * 64 + k2 * 2 * 32
    assert ops["live"] == k1 // 2 * 2 * 64 + k2 // 4 * 2 * 32
    # a dead channel is dead downstream: its BN parameters no longer change the output
    x = next(problem.batches("test", jax.random.key(0), 16))["x"]
    dead = int(np.flatnonzero(~alive)[0])
    poked = jax.tree_util.tree_map(lambda v: v, pruned)
    poked["block2"]["bn"]["beta"] = pruned["block2"]["bn"]["beta"].at[:, dead].add(5.0)
    model = bcnn.BCNN(8, (8, 16), 5, 4)
    out = lambda p: model.apply({"params": p, **state}, x)  # noqa: E731
    np.testing.assert_allclose(out(poked), out(pruned), atol=1e-6)


def test_signals_are_seeded_balanced_and_unit_power():
    x, y = rf_signals.generate(800, seed=3, snr_db=(60.0, 60.0))
    x2, y2 = rf_signals.generate(800, seed=3, snr_db=(60.0, 60.0))
    np.testing.assert_array_equal(x, x2)
    assert x.shape == (800, 128, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(y), [100] * 8)
    np.testing.assert_allclose(np.mean(np.sum(x**2, -1), 1), 1.0, atol=1e-3)
    # CPFSK is constant-envelope; OOK has near-zero stretches
    envelope = np.sqrt(np.sum(x**2, -1))
    cpfsk, ook = rf_signals.CLASSES.index("CPFSK"), rf_signals.CLASSES.index("OOK")
    np.testing.assert_allclose(envelope[y == cpfsk], 1.0, atol=1e-2)
    assert np.min(envelope[y == ook]) < 0.1
    with pytest.raises(ValueError, match="classes"):
        rf_signals.generate(10, seed=0, classes=("BPSK", "FM"))


def test_root_raised_cosine_squared_is_a_nyquist_pulse():
    taps = rf_signals.rrc_taps(8)
    np.testing.assert_allclose(np.sum(taps**2), 1.0, rtol=1e-6)
    np.testing.assert_allclose(taps, taps[::-1], atol=1e-12)
    raised = np.convolve(taps, taps)
    centre = len(raised) // 2
    others = raised[centre % 8 :: 8]
    others = np.delete(others, centre // 8)
    assert np.max(np.abs(others)) < 0.02 * raised[centre]  # zero ISI up to the span truncation
