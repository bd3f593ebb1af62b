"""Constructor parameters of every family: NumPy scalars are accepted and stored as Python numbers
(equal constraints have equal reprs, which run fingerprints use), and a bad value is a ValueError
naming the constraint, the parameter and the value."""

import numpy as np
import pytest

from prunax.constraints import NM, Block, ColumnSign, Pattern, Unstructured, global_

PATS = np.stack([np.eye(2, dtype=int), 1 - np.eye(2, dtype=int)])


@pytest.mark.parametrize(
    ("with_numpy", "with_python"),
    [
        (lambda: Unstructured(np.float32(0.3)), lambda: Unstructured(0.3)),
        (lambda: Unstructured(np.float64(0.9)), lambda: Unstructured(0.9)),
        (lambda: Unstructured(np.int64(0)), lambda: Unstructured(0.0)),
        (
            lambda: Block((np.int64(2), np.int32(2)), np.float32(0.5), (np.int64(0), np.int64(1))),
            lambda: Block([2, 2], 0.5, [0, 1]),
        ),
        (lambda: NM(np.int64(2), np.int64(4), np.int64(1)), lambda: NM(2, 4, 1)),
        (lambda: ColumnSign(np.int64(8), np.int64(2)), lambda: ColumnSign(8, 2)),
        (
            lambda: Pattern(PATS, (np.int64(0), np.int64(1)), connectivity=np.float32(0.5), tiles=True),
            lambda: Pattern(PATS.tolist(), (0, 1), connectivity=0.5, tiles=True),
        ),
    ],
)
def test_numpy_scalars_are_stored_as_python_numbers(with_numpy, with_python):
    a, b = with_numpy(), with_python()
    assert a == b and hash(a) == hash(b) and repr(a) == repr(b)


def test_numpy_sparsity_masks_like_the_python_float():
    w = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    np.testing.assert_array_equal(Unstructured(np.float32(0.5)).mask(w), Unstructured(0.5).mask(w))
    assert repr(global_(Unstructured(np.float32(0.8)), "kernel")) == repr(
        global_(Unstructured(0.8), "kernel")
    )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: Unstructured(np.float32(1.5)),
            r"Unstructured: sparsity must be a number in \[0, 1\), got np.float32\(1.5\)",
        ),
        (lambda: Unstructured(False), r"Unstructured: sparsity must be a number in \[0, 1\), got False"),
        (
            lambda: Block((2,), np.float64(1.0), (0,)),
            r"Block: sparsity must be a number in \[0, 1\), got np.float64\(1.0\)",
        ),
        (lambda: Block((2,), 0.5, (0.5,)), r"Block: axes must be a sequence of ints, got \(0.5,\)"),
        (lambda: Block((2,), 0.5, 0), r"Block: axes must be a sequence of ints, got 0"),
        (lambda: Block((np.int64(0),), 0.5, (0,)), r"Block: block shape must be a sequence of positive ints"),
        (lambda: NM(np.int64(5), 4, 0), r"NM: n \(N of N:M\) must be an int in \[0, 4\], got np.int64\(5\)"),
        (lambda: NM(2, 0, 0), r"NM: m \(M of N:M\) must be an int >= 1, got 0"),
        (lambda: NM(2, 4, 1.0), r"NM: axis must be an int, got 1.0"),
        (lambda: ColumnSign(np.int64(0), 0), r"ColumnSign: fragment must be an int >= 1, got np.int64\(0\)"),
        (lambda: ColumnSign(4, "0"), r"ColumnSign: axis must be an int, got '0'"),
        (
            lambda: Pattern(PATS, (0, 1), connectivity=np.float32(1.0)),
            r"Pattern: connectivity must be a number in \[0, 1\), got np.float32\(1.0\)",
        ),
        (lambda: Pattern(PATS, (0, 1.0)), r"Pattern: axes must be a sequence of ints, got \(0, 1.0\)"),
    ],
)
def test_bad_values_name_constraint_parameter_and_value(build, message):
    with pytest.raises(ValueError, match=message):
        build()
