"""Synthetic RF modulation IQ signals for ``bcnn`` (docs/problems.md, "bcnn"), generated from a seed.

Each example is ``length`` complex baseband samples at ``sps`` samples per symbol. Linear
modulations (PSK, QAM, PAM, OOK) are root-raised-cosine shaped (roll-off 0.35, span 6 symbols);
CPFSK is binary continuous-phase FSK with modulation index 0.5 (rectangular frequency pulse).
Every example gets a random timing offset (0..sps−1 samples), carrier phase U[0, 2π), frequency
offset U[−0.01, 0.01] cycles/sample, unit average power and complex AWGN at an SNR drawn from
``snr_db``. Returned as float32 (N, length, 2) = (real, imaginary) and int32 labels.
"""

from __future__ import annotations

import numpy as np

CLASSES = ("BPSK", "QPSK", "8PSK", "16QAM", "64QAM", "PAM4", "OOK", "CPFSK")


def _qam(m: int) -> np.ndarray:
    side = int(round(np.sqrt(m)))
    levels = np.arange(-(side - 1), side, 2, dtype=np.float64)
    return (levels[:, None] + 1j * levels[None, :]).ravel()


CONSTELLATIONS = {
    "BPSK": np.array([-1.0, 1.0], complex),
    "QPSK": np.exp(1j * (np.pi / 4 + np.pi / 2 * np.arange(4))),
    "8PSK": np.exp(2j * np.pi * np.arange(8) / 8),
    "16QAM": _qam(16),
    "64QAM": _qam(64),
    "PAM4": np.array([-3.0, -1.0, 1.0, 3.0], complex),
    "OOK": np.array([0.0, 1.0], complex),
}


def rrc_taps(sps: int, span: int = 6, beta: float = 0.35) -> np.ndarray:
    """Root-raised-cosine impulse response over ``span`` symbols, unit energy.

    h(t) = [sin(πt(1−β)) + 4βt cos(πt(1+β))] / [πt(1 − (4βt)²)], t in symbols, with the limits
    h(0) = 1 − β + 4β/π and h(±1/(4β)) = β/√2 [(1+2/π) sin(π/(4β)) + (1−2/π) cos(π/(4β))].
    """
    t = np.arange(-span * sps // 2, span * sps // 2 + 1) / sps
    with np.errstate(divide="ignore", invalid="ignore"):
        h = (np.sin(np.pi * t * (1 - beta)) + 4 * beta * t * np.cos(np.pi * t * (1 + beta))) / (
            np.pi * t * (1 - (4 * beta * t) ** 2)
        )
    h[np.isclose(t, 0)] = 1 - beta + 4 * beta / np.pi
    edge = np.isclose(np.abs(t), 1 / (4 * beta))
    h[edge] = (beta / np.sqrt(2)) * (
        (1 + 2 / np.pi) * np.sin(np.pi / (4 * beta)) + (1 - 2 / np.pi) * np.cos(np.pi / (4 * beta))
    )
    return h / np.linalg.norm(h)


def _shaped(symbols: np.ndarray, sps: int, taps: np.ndarray) -> np.ndarray:
    """Upsample (N, S) symbols by zero insertion and filter each row with ``taps`` ('full')."""
    n, count = symbols.shape
    up = np.zeros((n, count * sps), complex)
    up[:, ::sps] = symbols
    spectrum = np.fft.fft(up, count * sps + len(taps) - 1, axis=1) * np.fft.fft(
        taps, count * sps + len(taps) - 1
    )
    return np.fft.ifft(spectrum, axis=1)


def _cpfsk(bits: np.ndarray, sps: int, h: float = 0.5) -> np.ndarray:
    """Binary CPFSK: phase advances by ±πh per symbol, linearly within it."""
    steps = np.repeat(2.0 * bits - 1.0, sps, axis=1) * np.pi * h / sps
    return np.exp(1j * np.cumsum(steps, axis=1))


def generate(
    count: int,
    seed: int,
    classes: tuple[str, ...] = CLASSES,
    length: int = 128,
    sps: int = 8,
    snr_db: tuple[float, float] = (0.0, 20.0),
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` examples balanced over ``classes`` (label i = ``classes[i]``), shuffled."""
    unknown = [c for c in classes if c not in CLASSES]
    if unknown or len(set(classes)) != len(classes) or not classes:
        raise ValueError(f"classes must be distinct names from {CLASSES}, got {list(classes)}")
    if count < len(classes):
        raise ValueError(f"count must be at least the number of classes ({len(classes)}), got {count}")
    rng = np.random.default_rng(seed)
    taps = rrc_taps(sps)
    span_symbols = (len(taps) - 1) // sps
    n_symbols = length // sps + span_symbols + 2
    labels = np.arange(count) % len(classes)
    signals = np.zeros((count, length), complex)
    offsets = rng.integers(0, sps, count)
    for label, name in enumerate(classes):
        rows = np.flatnonzero(labels == label)
        if name == "CPFSK":
            wave = _cpfsk(rng.integers(0, 2, (len(rows), n_symbols)), sps)
            start = offsets[rows]
        else:
            points = CONSTELLATIONS[name]
            wave = _shaped(points[rng.integers(0, len(points), (len(rows), n_symbols))], sps, taps)
            start = span_symbols * sps + offsets[rows]  # past the filter's start-up transient
        window = start[:, None] + np.arange(length)
        signals[rows] = np.take_along_axis(wave, window, axis=1)
    n = np.arange(length)
    phase = rng.uniform(0, 2 * np.pi, (count, 1))
    freq = rng.uniform(-0.01, 0.01, (count, 1))
    signals = signals * np.exp(1j * (phase + 2 * np.pi * freq * n))
    power = np.mean(np.abs(signals) ** 2, axis=1, keepdims=True)
    signals = signals / np.sqrt(np.maximum(power, 1e-12))
    snr = rng.uniform(*snr_db, (count, 1))
    sigma = np.sqrt(10 ** (-snr / 10) / 2)
    signals = signals + sigma * (
        rng.standard_normal((count, length)) + 1j * rng.standard_normal((count, length))
    )
    order = rng.permutation(count)
    x = np.stack([signals.real, signals.imag], axis=-1).astype(np.float32)
    return x[order], labels[order].astype(np.int32)
