import numpy as np
import optax
import pytest

from prunax.solvers import cubic_sparsity


def test_cubic_sparsity_formula_and_ends():
    s = cubic_sparsity(0.9, begin_step=10, end_step=110)
    assert float(s(0)) == 0.0 and float(s(10)) == 0.0
    assert float(s(110)) == pytest.approx(0.9) and float(s(500)) == pytest.approx(0.9)
    t = 60
    assert float(s(t)) == pytest.approx(0.9 * (1 - (1 - (t - 10) / 100) ** 3), rel=1e-6)
    values = [float(s(t)) for t in range(0, 120)]
    assert all(a <= b + 1e-7 for a, b in zip(values, values[1:]))  # monotone


def test_cubic_sparsity_steps_every_and_lands_on_target():
    s = cubic_sparsity(0.8, begin_step=0, end_step=100, initial=0.1, every=30)
    values = np.array([float(s(t)) for t in range(0, 101)])
    assert len(np.unique(values)) == 5  # 0, 30, 60, 90, and the final 100
    assert values[0] == pytest.approx(0.1) and values[-1] == pytest.approx(0.8)


@pytest.mark.parametrize(
    "kwargs",
    [dict(final=1.0), dict(final=0.5, initial=0.6), dict(final=0.5, every=0), dict(final=0.5, end_step=0)],
)
def test_cubic_sparsity_bad_arguments(kwargs):
    args = dict(final=0.5, begin_step=0, end_step=10) | kwargs
    with pytest.raises(ValueError, match="cubic_sparsity"):
        cubic_sparsity(**args)


def test_cubic_fraction_goes_from_zero_to_one():
    from prunax.solvers import cubic_fraction

    f = cubic_fraction(5, 25, every=5)
    values = [float(f(t)) for t in range(0, 40)]
    assert values[0] == 0.0 and values[25] == 1.0 and values[39] == 1.0
    assert len(set(values)) == 5  # 0 at 5, then 10, 15, 20 and 1 at 25
    assert float(f(10)) == pytest.approx(1 - (1 - 5 / 20) ** 3)


def test_geometric_and_restarts():
    from prunax.solvers import geometric, restarts

    rho = geometric(1e-3, 1.3, every=10, maximum=2e-3)
    assert float(rho(9)) == pytest.approx(1e-3) and float(rho(10)) == pytest.approx(1.3e-3)
    assert float(rho(1000)) == pytest.approx(2e-3)
    lr = restarts(optax.linear_schedule(1.0, 0.0, 20), boundaries=[10, 30])
    assert (
        float(lr(9)) == pytest.approx(0.55) and float(lr(10)) == 1.0 and float(lr(31)) == pytest.approx(0.95)
    )
    with pytest.raises(ValueError, match="restarts"):
        restarts(lambda t: 1.0, [10, 5])
    with pytest.raises(ValueError, match="geometric"):
        geometric(0.0, 1.3, 10)
