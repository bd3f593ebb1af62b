"""A state-vector quantum simulator in JAX: pure functions, jit-able and differentiable.

A state of n qubits is a complex64 vector of 2ⁿ amplitudes; wire 0 is the most significant bit
of the basis index (|q0 q1 … q_{n−1}⟩, PennyLane's convention). Gates act by a tensordot on the
state viewed as an (2,)*n tensor; controlled gates apply the target gate and keep it only where
every control bit is 1. Batches: ``jax.vmap`` over the state.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

H = jnp.array([[1, 1], [1, -1]], jnp.complex64) / np.sqrt(2)
X = jnp.array([[0, 1], [1, 0]], jnp.complex64)
Z = jnp.array([[1, 0], [0, -1]], jnp.complex64)


def rx(theta):
    c, s = jnp.cos(theta / 2), jnp.sin(theta / 2)
    return jnp.array([[c, -1j * s], [-1j * s, c]], jnp.complex64)


def ry(theta):
    c, s = jnp.cos(theta / 2), jnp.sin(theta / 2)
    return jnp.array([[c, -s], [s, c]], jnp.complex64)


def rz(theta):
    phase = jnp.exp(-0.5j * theta)
    return jnp.array([[phase, 0], [0, jnp.conj(phase)]], jnp.complex64)


def qubits(state) -> int:
    n = int(np.log2(state.shape[-1]))
    if state.ndim != 1 or 2**n != state.shape[-1]:
        raise ValueError(f"a state is a vector of 2**n amplitudes, got shape {tuple(state.shape)}")
    return n


def _check_wires(wires: Sequence[int], n: int) -> None:
    if len(set(wires)) != len(wires) or any(not 0 <= w < n for w in wires):
        raise ValueError(f"wires must be distinct and in [0, {n}), got {list(wires)}")


def zero_state(n: int):
    return jnp.zeros(2**n, jnp.complex64).at[0].set(1)


def prepare(amplitudes):
    """State preparation: the normalised amplitude vector as a state (any 2ⁿ-long vector ≠ 0)."""
    amplitudes = jnp.asarray(amplitudes).astype(jnp.complex64)
    qubits(amplitudes)
    return amplitudes / jnp.linalg.norm(amplitudes)


def apply(state, matrix, wires: Sequence[int]):
    """Apply a 2ᵏ×2ᵏ unitary to ``wires`` (its first wire most significant)."""
    n, k = qubits(state), len(wires)
    _check_wires(wires, n)
    tensor = jnp.reshape(matrix.astype(jnp.complex64), (2,) * (2 * k))
    out = jnp.tensordot(tensor, state.reshape((2,) * n), axes=(list(range(k, 2 * k)), list(wires)))
    return jnp.moveaxis(out, list(range(k)), list(wires)).reshape(-1)


def bit(n: int, wire: int) -> np.ndarray:
    """The value of ``wire`` in each of the 2ⁿ basis indices."""
    return (np.arange(2**n) >> (n - 1 - wire)) & 1


def controlled(state, matrix, controls: Sequence[int], targets: Sequence[int]):
    """Apply ``matrix`` to ``targets`` on the basis states whose ``controls`` are all 1."""
    n = qubits(state)
    _check_wires([*controls, *targets], n)
    on = np.all([bit(n, c) == 1 for c in controls], axis=0) if controls else np.ones(2**n, bool)
    return jnp.where(on, apply(state, matrix, targets), state)


def cnot(state, control: int, target: int):
    return controlled(state, X, [control], [target])


def cz(state, a: int, b: int):
    return controlled(state, Z, [a], [b])


def mcx(state, controls: Sequence[int], target: int):
    """Multi-controlled X (Toffoli for two controls)."""
    return controlled(state, X, controls, [target])


def mcz(state, controls: Sequence[int], target: int):
    return controlled(state, Z, controls, [target])


def diagonal(state, phases):
    """The diagonal unitary diag(phases) over all wires (entries of modulus 1)."""
    return state * jnp.asarray(phases).astype(jnp.complex64)


def probabilities(state):
    return jnp.abs(state) ** 2


def p_one(state):
    """P(wire = 1) for every wire, shape (n,)."""
    n = qubits(state)
    table = probabilities(state).reshape((2,) * n)
    return jnp.stack([jnp.sum(jnp.take(table, 1, axis=w)) for w in range(n)])


def expval_z(state):
    """⟨Z⟩ of every wire: P(0) − P(1)."""
    return 1 - 2 * p_one(state)


def sample(key, state, shots: int):
    """Empirical basis-state frequencies of ``shots`` measurements (an unbiased estimate of
    ``probabilities``; not differentiable)."""
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    probs = probabilities(state)
    draws = jax.random.choice(key, probs.shape[-1], (shots,), p=probs / probs.sum())
    return jnp.bincount(draws, length=probs.shape[-1]) / shots
