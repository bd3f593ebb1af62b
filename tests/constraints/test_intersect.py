import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from prunax.constraints import NM, Block, ColumnSign, Intersect, Unstructured
from tests.constraints.helpers import brute_force_best, check_projection_laws, energy

values = st.floats(-8, 8, width=32) | st.integers(-2, 2).map(float)
COMPOSITES = [
    Unstructured(0.5) & ColumnSign(2, axis=0),
    ColumnSign(2, axis=0) & Unstructured(0.5),
    Block((1,), 0.25, (1,)) & NM(1, 2, axis=0),
    NM(2, 4, axis=0) & Unstructured(0.7) & ColumnSign(3, axis=0),
]


@given(hnp.arrays(np.float32, (6, 4), elements=values), st.sampled_from(COMPOSITES))
def test_composition_is_always_feasible(w, c):
    assert not c.exact
    mask = check_projection_laws(c, w)
    for part in c.parts:  # the result lies in every part
        assert bool(part.is_feasible(jnp.where(mask, w, 0)))


def test_composition_is_not_the_projection():
    """docs/constraints.md, "The one idea": polarity ∩ top-1 on [5, -4, -4, -4]: sign first loses
    57, the optimum 48."""
    w = jnp.asarray([[5.0], [-4.0], [-4.0], [-4.0]])
    c = ColumnSign(4, axis=0) & Unstructured(0.75)
    lost = float(jnp.sum((w - c.project(w)) ** 2))
    best = brute_force_best(
        np.asarray(w),
        lambda s: s.sum() <= 1 and not ((np.asarray(w) * s > 0).any() and (np.asarray(w) * s < 0).any()),
    )
    assert lost == 57.0 and energy(w, np.ones((4, 1))) - best == 48.0


def test_and_flattens_and_validates():
    a, b, c = Unstructured(0.5), NM(2, 4, 0), ColumnSign(2, 0)
    assert (a & b & c).parts == (a, b, c) == Intersect.of(a, Intersect.of(b, c)).parts
    with pytest.raises(ValueError, match="two or more"):
        Intersect((a,))
    with pytest.raises(ValueError, match=r"on leaf 'x' with shape \(4,\): a crossbar"):
        (a & c).mask(jnp.ones(4), "x")
    assert (Block((2,), 0.5, (0,)) & c).groups((4, 2)).count == 2 and (c & a).groups((4, 2)).count == 8
