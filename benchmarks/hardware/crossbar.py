"""FORMS crossbar cost model (ISCA 2021; docs/benchmarks.md, "FORMS crossbar cost"): what a pruned
layer costs on ReRAM crossbars with polarized (single-signed) column fragments and input
zero-skipping.

A layer maps to a matrix of rows (inputs: kh·kw·cin for a (kh, kw, cin, cout) conv kernel, ``in``
for a Dense (in, out) kernel) × columns (outputs). All-zero rows and columns left by structured
pruning are dropped (R'×C'). A weight takes ⌈weight bits / cell bits⌉ cells, so FORMS and ISAAC
(offset) designs need ⌈R'/R⌉·⌈C'·cells/C⌉ crossbars of R×C, and PRIME (positive and negative
arrays) twice that. Each column is cut into fragments of f rows; FORMS stores one sign bit per
(fragment, column) and needs every fragment single-signed. Polarity violations are counted on the
constraint's fragments of the full row order (what ``ColumnSign`` enforces) and on the fragments
of the compacted rows (what a mapper that drops zero rows would see).

Zero-skipping: inputs are quantised to unsigned ``input_bits`` integers and fed bit-serially; a
fragment of f rows spends one cycle per bit position in which any of its f inputs has a 1
("bitplane"), or ⌈log2(max + 1)⌉ cycles ("leading-zero"); an all-zero fragment costs nothing.
The baseline spends ``input_bits`` cycles on every fragment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DESIGNS = ("FORMS", "ISAAC", "PRIME")
SKIPPING = ("bitplane", "leading-zero")


@dataclass(frozen=True)
class Hardware:
    rows: int = 128
    columns: int = 128
    cell_bits: int = 2
    weight_bits: int = 8
    input_bits: int = 8
    fragment: int = 8

    def __post_init__(self):
        values = {
            k: getattr(self, k)
            for k in ("rows", "columns", "cell_bits", "weight_bits", "input_bits", "fragment")
        }
        bad = {k: v for k, v in values.items() if not isinstance(v, int | np.integer) or v < 1}
        if bad:
            raise ValueError(f"crossbar parameters must be positive integers, got {bad}")
        if self.rows % self.fragment:
            raise ValueError(
                f"fragment {self.fragment} must divide the crossbar rows {self.rows} (fragments align)"
            )

    @property
    def cells_per_weight(self) -> int:
        return -(-self.weight_bits // self.cell_bits)


def layer_matrix(kernel: np.ndarray) -> np.ndarray:
    """The crossbar matrix of a kernel: (kh, kw, cin, cout) → (kh·kw·cin, cout); (in, out) as is."""
    kernel = np.asarray(kernel)
    if kernel.ndim not in (2, 4):
        raise ValueError(
            f"a crossbar layer is a Dense (in, out) or conv (kh, kw, cin, cout) kernel, got {kernel.shape}"
        )
    return kernel.reshape(-1, kernel.shape[-1])


def live_rows_and_columns(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the rows and columns that hold a nonzero."""
    nonzero = matrix != 0
    return np.flatnonzero(nonzero.any(1)), np.flatnonzero(nonzero.any(0))


def crossbars(rows: int, columns: int, hw: Hardware, design: str = "FORMS") -> int:
    """Crossbars for an R'×C' matrix: ⌈R'/R⌉·⌈C'·cells/C⌉, twice that for PRIME's +/− arrays."""
    if design not in DESIGNS:
        raise ValueError(f"unknown crossbar design {design!r}; valid: {DESIGNS}")
    if rows == 0 or columns == 0:
        return 0
    count = -(-rows // hw.rows) * -(-(columns * hw.cells_per_weight) // hw.columns)
    return 2 * count if design == "PRIME" else count


def polarity_violations(matrix: np.ndarray, fragment: int) -> int:
    """(fragment, column) pairs whose nonzeros have both signs; fragments are consecutive rows."""
    rows, columns = matrix.shape
    if rows == 0 or columns == 0:
        return 0
    padded = np.pad(matrix, ((0, -rows % fragment), (0, 0))).reshape(-1, fragment, columns)
    return int(np.sum((padded > 0).any(1) & (padded < 0).any(1)))


def fragment_cycles(inputs: np.ndarray, fragment: int, mode: str = "bitplane") -> np.ndarray:
    """Cycles per (window, fragment) for unsigned integer inputs (windows, rows)."""
    if mode not in SKIPPING:
        raise ValueError(f"unknown zero-skipping mode {mode!r}; valid: {SKIPPING}")
    inputs = np.asarray(inputs, np.uint32)
    rows = inputs.shape[1]
    grouped = np.pad(inputs, ((0, 0), (0, -rows % fragment))).reshape(len(inputs), -1, fragment)
    if mode == "bitplane":
        planes = np.bitwise_or.reduce(grouped, axis=2)
        return np.bitwise_count(planes).astype(np.int64)
    peak = grouped.max(axis=2)
    return np.where(peak > 0, np.floor(np.log2(np.maximum(peak, 1))) + 1, 0).astype(np.int64)


def quantize(activations: np.ndarray, bits: int, scale: float | None = None) -> np.ndarray:
    """Non-negative activations to unsigned ``bits``-bit integers: round(x / scale · (2^bits − 1)),
    ``scale`` the maximum by default; negative inputs are an error (zero-skipping assumes ReLU)."""
    activations = np.asarray(activations, np.float64)
    if np.any(activations < 0):
        raise ValueError("zero-skipping needs non-negative (post-ReLU) inputs; got negative values")
    scale = float(activations.max()) if scale is None else scale
    if scale <= 0:
        return np.zeros(activations.shape, np.uint32)
    return np.clip(np.round(activations / scale * (2**bits - 1)), 0, 2**bits - 1).astype(np.uint32)


def layer_cost(kernel, inputs=None, hw: Hardware = Hardware(), mode: str = "bitplane") -> dict:
    """Crossbar cost of one pruned kernel. ``inputs`` (windows, rows): sampled im2col input rows
    of the layer, non-negative; without them the zero-skipping entries are omitted."""
    matrix = layer_matrix(kernel)
    rows, columns = live_rows_and_columns(matrix)
    compact = matrix[np.ix_(rows, columns)]
    cost = {
        "rows": len(rows),
        "columns": len(columns),
        "dense_rows": matrix.shape[0],
        "dense_columns": matrix.shape[1],
        **{f"crossbars_{d}": crossbars(len(rows), len(columns), hw, d) for d in DESIGNS},
        "dense_crossbars_FORMS": crossbars(*matrix.shape, hw, "FORMS"),
        "sign_bits": -(-len(rows) // hw.fragment) * len(columns),
        "violations": polarity_violations(matrix, hw.fragment),
        "violations_compacted": polarity_violations(compact, hw.fragment),
    }
    if inputs is not None:
        inputs = np.asarray(inputs)
        if inputs.ndim != 2 or inputs.shape[1] != matrix.shape[0]:
            raise ValueError(
                f"inputs must be (windows, {matrix.shape[0]}) im2col rows, got shape {inputs.shape}"
            )
        levels = quantize(inputs, hw.input_bits)[:, rows]  # one scale per layer
        cycles = fragment_cycles(levels, hw.fragment, mode)
        total = cycles.size * hw.input_bits
        executed = int(cycles.sum())
        cost |= {
            "ops_total": total,
            "ops_executed": executed,
            "skipped_fraction": 1 - executed / total if total else 0.0,
            "speedup": total / executed if executed else float("inf"),
        }
    return cost
