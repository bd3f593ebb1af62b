"""Quantum neurons on amplitude-encoded inputs (docs/problems.md, "quantum"), as Flax modules.

* **U-LYR** (QuantumFlow, Jiang et al. 2021): binary weights w = sign(W) (identity STE); a neuron
  is the circuit diag(w) → H^⊗k → X^⊗k → MCX onto an ancilla, whose P(1) is
  out_j = |Σ_i w_ji ψ_i|²/N (N = 2ᵏ amplitudes). ``u_neuron_circuit`` builds it gate by gate.
* **P-LYR**: inputs are probabilities p_i (independent ±1 variables of mean e_i = 2p_i − 1);
  out = E[(Σ w_i x_i)²]/m² = (m + (Σ w_i e_i)² − Σ e_i²)/m², O(m) per neuron.
* **N-LYR**: batch adjustment to mean 0.5 (x + y(1−x), y = (0.5−μ)/(1−μ) if μ ≤ 0.5, else
  x·0.5/μ; μ the batch mean in training, its running mean (momentum 0.1) in evaluation), then a
  trainable shrink x/(1 + relu(t)). Recalibration sets the running mean to the average batch mean.
* **VQC** (Sim et al. 2019 circuit 10): per block RY on every qubit, CZ on the ring (q, q+1) and
  (0, n−1), RY on every qubit; ``lax.scan`` over blocks. The circuit is real, so the fast path
  multiplies float32 state batches by each block's 2ⁿ×2ⁿ unitary; ``vqc_circuit`` is the
  gate-by-gate reference on the simulator.

Rotation angles are stored as t = tan(θ/2), so cos(θ/2) = 1/√(1+t²), sin(θ/2) = t/√(1+t²): every
real t is an angle in (−π, π) (wrapping is built in), t = 0 is a removed gate, and |t| orders gates
by |θ| — magnitude pruning of a ``tan_half`` leaf is exact gate removal.
"""

from __future__ import annotations

from functools import reduce

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .._binary import ste_sign
from .._recalibration import register_statistics
from . import simulator as qs

ARCHS = ("qf", "qf_deep", "vqc", "mixer")


def binary(w):
    """sign(W) with the identity straight-through gradient; a removed (zero) weight stays 0."""
    return ste_sign(w, zero_is_zero=True, clip=False)


def u_layer(psi, weight):
    """U-LYR outputs |ψ·sign(W)ᵀ|²/N for states ψ (B, N) and latent weights (out, N)."""
    return jnp.abs(psi @ binary(weight).T.astype(psi.dtype)) ** 2 / psi.shape[-1]


def p_layer(p, weight):
    """P-LYR outputs (m + (Σ w e)² − Σ e²)/m² for input probabilities p (B, m), weights (out, m)."""
    e, m = 2 * p - 1, p.shape[-1]
    return (m + (e @ binary(weight).T) ** 2 - jnp.sum(e**2, -1, keepdims=True)) / m**2


def u_neuron_circuit(x, w):
    """One U-LYR neuron as an explicit circuit on k data qubits + an ancilla (last wire): P(1)."""
    k = qs.qubits(jnp.asarray(x, jnp.complex64))
    state = qs.prepare(jnp.kron(jnp.asarray(x), jnp.array([1.0, 0.0])))
    state = qs.diagonal(state, jnp.kron(jnp.asarray(w), jnp.ones(2)))
    for q in range(k):
        state = qs.apply(qs.apply(state, qs.H, [q]), qs.X, [q])
    return qs.p_one(qs.mcx(state, list(range(k)), k))[k]


def ry_tan(t):
    """RY(θ) from t = tan(θ/2), real: [[c, −s], [s, c]] with c = 1/√(1+t²), s = t·c."""
    c = jax.lax.rsqrt(1 + t**2)
    return jnp.stack([jnp.stack([c, -t * c]), jnp.stack([t * c, c])])


def ring_pairs(n: int) -> list[tuple[int, int]]:
    pairs = [(q, q + 1) for q in range(n - 1)]
    return pairs + [(0, n - 1)] if n > 2 else pairs


def cz_ring_phases(n: int) -> np.ndarray:
    """The diagonal of the CZ ring: (−1) to the number of ring pairs with both bits 1."""
    ones = sum(qs.bit(n, a) * qs.bit(n, b) for a, b in ring_pairs(n))
    return (-1.0) ** ones


def vqc_unitary(block):
    """The 2ⁿ×2ⁿ real unitary of one circuit-10 block; ``block`` is (2, n) of tan(θ/2)."""
    first, second = (reduce(jnp.kron, [ry_tan(t) for t in layer]) for layer in block)
    return second @ (cz_ring_phases(block.shape[1])[:, None] * first)


def vqc_apply(psi, tan_half):
    """Run the VQC with angles (blocks, 2, n) on states ψ (B, 2ⁿ); the scan is over blocks."""

    def step(state, block):
        return state @ vqc_unitary(block).T, None

    return jax.lax.scan(step, psi, tan_half)[0]


def vqc_circuit(x, tan_half):
    """The same VQC on one state, gate by gate on the simulator (the test reference)."""
    state = qs.prepare(x)
    n = qs.qubits(state)
    for block in np.asarray(tan_half):
        for layer, t in enumerate(block):
            for q in range(n):
                state = qs.apply(state, qs.ry(2 * jnp.arctan(t[q])), [q])
            if layer == 0:
                for a, b in ring_pairs(n):
                    state = qs.cz(state, a, b)
    return state


def leading_p_one(psi, count: int):
    """P(1) of the ``count`` most significant qubits of states ψ (B, 2ⁿ)."""
    n = int(np.log2(psi.shape[-1]))
    table = (jnp.abs(psi) ** 2).reshape((-1,) + (2,) * n)
    return jnp.stack([jnp.take(table, 1, axis=q + 1).reshape(len(psi), -1).sum(-1) for q in range(count)], -1)


def _uniform(bound: float):
    return lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def _angles(key, shape):
    theta = jax.random.normal(key, shape) * np.pi
    return jnp.tan(0.5 * (theta - 2 * np.pi * jnp.round(theta / (2 * np.pi))))  # θ wrapped to (−π, π]


def _latent_weight(module: nn.Module, features: int, inputs: int):
    """The (features, inputs) latent binary weights of a U-LYR or P-LYR, uniform in ±√(1.5/(in + out))."""
    bound = float(np.sqrt(1.5 / (inputs + features)))
    return module.param("weight", _uniform(bound), (features, inputs))


class ULayer(nn.Module):
    features: int

    @nn.compact
    def __call__(self, psi):
        return u_layer(psi, _latent_weight(self, self.features, psi.shape[-1]))


class PLayer(nn.Module):
    features: int

    @nn.compact
    def __call__(self, p):
        return p_layer(p, _latent_weight(self, self.features, p.shape[-1]))


class NLayer(nn.Module):
    momentum: float = 0.1

    @nn.compact
    def __call__(self, x, train: bool):
        running = self.variable("batch_stats", "mean", lambda: jnp.full(x.shape[-1], 0.5))
        mu = jnp.mean(x, 0) if train else running.value
        if train and not self.is_initializing():
            running.value = (1 - self.momentum) * running.value + self.momentum * mu
        mu = jnp.clip(mu, 1e-6, 1 - 1e-6)
        y = (0.5 - mu) / (1 - mu)
        x = jnp.where(mu <= 0.5, x + y * (1 - x), x * 0.5 / mu)
        return x / (1 + nn.relu(self.param("shrink", nn.initializers.zeros, (x.shape[-1],))))


def _n_layer_statistics(module: NLayer, arguments: dict) -> dict:
    """Recalibration: the batch mean of the training-mode N-LYR, its running ``mean``'s target."""
    return {"mean": jnp.mean(arguments["x"], 0)} if arguments["train"] else {}


register_statistics(NLayer, _n_layer_statistics)


class VQC(nn.Module):
    blocks: int

    @nn.compact
    def __call__(self, psi):
        n = int(np.log2(psi.shape[-1]))
        return vqc_apply(psi, self.param("tan_half", _angles, (self.blocks, 2, n)))


class QuantumNet(nn.Module):
    """``arch``: "qf" (U-LYR with C outputs), "qf_deep" (U-LYR 4 → N → P-LYR C → N), "vqc"
    (circuit 10 × ``blocks``, P(1) of the C leading qubits) or "mixer" (the VQC's output state
    feeds a U-LYR of C neurons, nothing measured in between). Returns C probabilities."""

    arch: str
    classes: int
    blocks: int = 2

    @nn.compact
    def __call__(self, psi, train: bool = False):
        if self.arch == "qf":
            return ULayer(self.classes, name="u_out")(psi)
        if self.arch == "qf_deep":
            hidden = NLayer(name="n1")(ULayer(4, name="u1")(psi), train)
            return NLayer(name="n2")(PLayer(self.classes, name="p2")(hidden), train)
        state = VQC(self.blocks, name="vqc")(psi)
        if self.arch == "vqc":
            return leading_p_one(state, self.classes)
        if self.arch == "mixer":
            return ULayer(self.classes, name="u_out")(state)
        raise ValueError(f"unknown quantum architecture {self.arch!r}; valid: {ARCHS}")
