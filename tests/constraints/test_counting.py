import math
from decimal import Decimal, localcontext

import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from prunax.constraints import kept_count
from prunax.constraints._counting import robust_floor


def test_rounding_cases_from_the_design():
    assert kept_count(10, 0.7) == 3
    assert 0.57 * 100 < 57 and kept_count(100, 0.57) == 43  # 56.99999999999999
    assert 0.29 * 100 != 29 and kept_count(100, 0.29) == 71  # 28.999999999999996 floors to 29
    assert kept_count(10, 0.9) == 1
    assert kept_count(10, 0.95) == 1  # floor(9.5) = 9 pruned
    assert kept_count(7, 0.0) == 7
    assert kept_count(0, 0.5) == 0


@given(st.integers(0, 10**7), st.floats(0, 0.999999))
def test_kept_count_is_n_minus_floor(n, s):
    k = kept_count(n, s)
    assert 0 <= k <= n
    with localcontext() as context:
        context.prec = 60
        exact = Decimal(repr(s)) * n  # s * n for the decimal s prints as, exactly
    nearest = round(exact)
    # the plain floor, except within 1e-9 (absolutely) of an integer
    assert k == n - (nearest if abs(exact - nearest) <= Decimal("1e-9") else math.floor(exact))


def test_snap_is_absolute():
    """The README's rule: |x - round(x)| <= 1e-9 snaps. A relative 1e-9 snapped 1e6 - 5e-9 to 1e6
    (and kept 500000 of 10**6 at s = 0.499999999999, whose s * n is 1e-6 below 500000)."""
    assert robust_floor(1e6 - 5e-9) == 999_999 and robust_floor(1e6 - 5e-10) == 1_000_000
    assert robust_floor(3 - 5e-10) == 3 and robust_floor(3 - 2e-9) == 2 and robust_floor(3 + 2e-9) == 3
    assert kept_count(10**6, 0.499999999999) == 500_001
    assert kept_count(3, 2 / 3) == 1  # 2 / 3 * 3 == 1.9999999999999998 snaps to 2


def test_decimal_sparsities_are_exact_beyond_the_snap():
    # in float64, 0.071 * 10000007000 is 710000496.9999999: 1e-7 off, beyond an absolute snap
    assert abs(0.071 * 10_000_007_000 - 710_000_497) > 1e-9
    assert kept_count(10_000_007_000, 0.071) == 10_000_007_000 - 710_000_497
    assert kept_count(100, np.float32(0.29)) == 71  # a NumPy float counts as the decimal it prints as


@given(st.integers(1, 10**6), st.integers(0, 999))
def test_decimal_sparsities_hit_their_count(n, permille):
    # s = p/1000 and n a multiple of 1000: s * n is an integer, whatever the binary rounding
    assert kept_count(n * 1000, permille / 1000) == n * 1000 - n * permille


def test_robust_floor_plain_values():
    assert robust_floor(2.5) == 2 and robust_floor(2.9999999999999996) == 3 and robust_floor(-0.5) == -1


@given(
    n=st.integers(0, 10**6),
    sparsity=st.floats(0, 0.999),
    scale=st.floats(0, 1),
)
def test_scaled_kept_count_scales_the_exact_pruned_count(n, sparsity, scale):
    pruned = n - kept_count(n, sparsity)
    k = int(kept_count(n, sparsity, jnp.float32(scale)))
    assert n - pruned <= k <= n
    assert k == n - math.floor(np.float32(scale) * np.float32(pruned)) or scale == 1
    assert int(kept_count(n, sparsity, 1.0)) == kept_count(n, sparsity)
    assert int(kept_count(n, sparsity, 0.0)) == n
