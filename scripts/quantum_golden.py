"""Write tests/fixtures/quantum_golden.npz: PennyLane's answers for circuits the prunax simulator
(`prunax.problems.quantum_sim`, `qnn`) must reproduce. PennyLane is not a prunax dependency; run

    python3 -m venv /tmp/pl && /tmp/pl/bin/pip install pennylane numpy
    /tmp/pl/bin/python scripts/quantum_golden.py

Inputs are drawn from a fixed seed and stored beside the outputs, so the test needs only the file.
"""

from pathlib import Path

import numpy as np
import pennylane as qml

OUT = Path(__file__).parents[1] / "tests" / "fixtures" / "quantum_golden.npz"
rng = np.random.default_rng(2026)
golden = {"pennylane_version": np.array(qml.__version__)}

# 1. every gate of the simulator on 4 qubits from a random complex state
n = 4
amplitudes = rng.standard_normal(2**n) + 1j * rng.standard_normal(2**n)
amplitudes /= np.linalg.norm(amplitudes)
angles = rng.uniform(-np.pi, np.pi, 6)
phases = np.exp(1j * rng.uniform(-np.pi, np.pi, 2**n))


def gates():
    qml.StatePrep(amplitudes, wires=range(n))
    qml.Hadamard(0)
    qml.PauliX(1)
    qml.PauliZ(2)
    qml.RX(angles[0], 3)
    qml.RY(angles[1], 0)
    qml.RZ(angles[2], 1)
    qml.CZ([0, 3])
    qml.CNOT([2, 1])
    qml.CRX(angles[3], [3, 0])
    qml.CRY(angles[4], [1, 2])
    qml.CRZ(angles[5], [0, 2])
    qml.MultiControlledX(wires=[0, 1, 3, 2])  # controls 0, 1, 3; target 2
    qml.ctrl(qml.PauliZ(3), control=[0, 2])
    qml.DiagonalQubitUnitary(phases, wires=range(n))


device = qml.device("default.qubit", wires=n)
golden.update(
    gates_amplitudes=amplitudes,
    gates_angles=angles,
    gates_phases=phases,
    gates_state=qml.QNode(lambda: (gates(), qml.state())[1], device)(),
    gates_probs=qml.QNode(lambda: (gates(), qml.probs(wires=range(n)))[1], device)(),
    gates_expval_z=np.array(
        qml.QNode(lambda: (gates(), [qml.expval(qml.PauliZ(w)) for w in range(n)])[1], device)()
    ),
)


# 2. circuit 10 (RY all, CZ ring, RY all) x 2 blocks on amplitude-encoded inputs, 4 and 6 qubits
def ring(n):
    return [(q, q + 1) for q in range(n - 1)] + ([(0, n - 1)] if n > 2 else [])


for n in (4, 6):
    x = np.abs(rng.standard_normal(2**n)) + 1e-6
    x /= np.linalg.norm(x)
    theta = rng.uniform(-np.pi, np.pi, (2, 2, n))

    def vqc(x=x, theta=theta, n=n):
        qml.StatePrep(x, wires=range(n))
        for block in theta:
            for q in range(n):
                qml.RY(block[0, q], q)
            for a, b in ring(n):
                qml.CZ([a, b])
            for q in range(n):
                qml.RY(block[1, q], q)
        return qml.state()

    golden[f"vqc{n}_x"], golden[f"vqc{n}_theta"] = x, theta
    golden[f"vqc{n}_state"] = qml.QNode(vqc, qml.device("default.qubit", wires=n))()

# 3. a U-LYR neuron: diag(w), H, X on 4 data qubits, MCX onto the ancilla (wire 4); P(ancilla = 1)
k = 4
x = np.abs(rng.standard_normal(2**k))
x /= np.linalg.norm(x)
w = rng.choice([-1.0, 1.0], 2**k)


def neuron():
    qml.StatePrep(np.kron(x, [1.0, 0.0]), wires=range(k + 1))
    qml.DiagonalQubitUnitary(np.kron(w, [1.0, 1.0]), wires=range(k + 1))
    for q in range(k):
        qml.Hadamard(q)
        qml.PauliX(q)
    qml.MultiControlledX(wires=list(range(k + 1)))
    return qml.probs(wires=k)


golden.update(u_x=x, u_w=w, u_p1=qml.QNode(neuron, qml.device("default.qubit", wires=k + 1))()[1])

# 4. a P-LYR neuron: inputs as qubits RY(θ_i)|0> with P(1) = p_i; E[(Σ w_i x_i)²]/m² with x_i = ±1
# the measured bit as ±1 (1 -> +1), an expectation of a diagonal observable
m = 5
p = rng.uniform(0, 1, m)
w = rng.choice([-1.0, 1.0], m)
bits = (np.arange(2**m)[:, None] >> (m - 1 - np.arange(m))) & 1
observable = np.diag(((2 * bits - 1) @ w) ** 2 / m**2)


def p_neuron():
    for i in range(m):
        qml.RY(2 * np.arcsin(np.sqrt(p[i])), i)
    return qml.expval(qml.Hermitian(observable, wires=range(m)))


golden.update(p_p=p, p_w=w, p_out=qml.QNode(p_neuron, qml.device("default.qubit", wires=m))())

OUT.parent.mkdir(parents=True, exist_ok=True)
np.savez(OUT, **{key: np.asarray(value) for key, value in golden.items()})
print(f"wrote {OUT} ({len(golden)} arrays, PennyLane {qml.__version__})")
