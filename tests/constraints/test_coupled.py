"""Coupled groups: channels spanning slices of several leaves, against brute force on tiny trees."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunax import constraints as C


def _tree(rng, widths):
    """Per coupling c of width n: a conv kernel (2, 2, 3, n), a BatchNorm scale (n,) and the next
    kernel's input slices (n, 5); coupling c's members are those three leaves."""
    params, couplings = {}, {}
    for c, n in enumerate(widths):
        params[f"l{c}"] = {
            "conv": jnp.asarray(rng.normal(size=(2, 2, 3, n)), jnp.float32),
            "scale": jnp.asarray(rng.normal(size=(n,)), jnp.float32),
            "next": jnp.asarray(rng.normal(size=(n, 5)), jnp.float32),
        }
        couplings[f"channels{c}"] = [(f"l{c}/conv", 3), (f"l{c}/scale", 0), (f"l{c}/next", 0)]
    return params, couplings


def _energies(params, widths):
    """NumPy transcription: channel j of coupling c = slice j of its three leaves."""
    out = []
    for c, _ in enumerate(widths):
        leaf = {k: np.asarray(v, np.float64) for k, v in params[f"l{c}"].items()}
        out.append((leaf["conv"] ** 2).sum((0, 1, 2)) + leaf["scale"] ** 2 + (leaf["next"] ** 2).sum(1))
    return out


def _brute_force(energies, sparsity, round_to, shared):
    """The largest kept energy over every channel subset the set admits."""
    chunks = lambda u: -(-u // round_to)  # noqa: E731
    kept = lambda n: n - int(np.floor(sparsity * n + 1e-9))  # noqa: E731
    best = 0.0
    for choice in itertools.product(*[itertools.product((0, 1), repeat=len(e)) for e in energies]):
        used = [sum(c) for c in choice]
        if shared:
            ok = sum(chunks(u) for u in used) <= chunks(kept(sum(len(e) for e in energies)))
        else:
            ok = all(u <= min(chunks(kept(len(e))) * round_to, len(e)) for u, e in zip(used, energies))
        if ok:
            best = max(best, sum(float(np.dot(c, e)) for c, e in zip(choice, energies)))
    return best


@settings(max_examples=40, deadline=None)
@given(
    widths=st.lists(st.integers(1, 4), min_size=1, max_size=3).filter(lambda w: sum(w) <= 8),
    sparsity=st.sampled_from([0.0, 0.25, 0.5, 0.6, 0.9]),
    round_to=st.sampled_from([1, 2, 3]),
    shared=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_the_projection_keeps_the_most_energy_the_set_admits(widths, sparsity, round_to, shared, seed):
    params, couplings = _tree(np.random.default_rng(seed), widths)
    spec = C.spec([C.coupled(sparsity, couplings, round_to=round_to, shared=shared)])
    masks = spec.mask(params)
    kept = 0.0
    for c, e in enumerate(_energies(params, widths)):
        channel = np.asarray(masks[f"l{c}"]["scale"])
        # a channel is kept or dropped whole: in every member's slice alike
        assert np.array_equal(np.asarray(masks[f"l{c}"]["conv"]).any((0, 1, 2)), channel)
        assert np.asarray(masks[f"l{c}"]["conv"]).all((0, 1, 2)).tolist() == channel.tolist()
        assert np.array_equal(np.asarray(masks[f"l{c}"]["next"]).all(1), channel)
        kept += float(np.dot(channel, e))
    assert bool(spec.is_feasible(spec.project(params)))
    np.testing.assert_allclose(
        kept, _brute_force(_energies(params, widths), sparsity, round_to, shared), rtol=1e-5
    )


def test_widths_come_in_chunks_of_round_to_or_whole():
    params, couplings = _tree(np.random.default_rng(0), [10, 16])
    spec = C.spec([C.coupled(0.5, couplings, round_to=4)])
    masks = spec.mask(params)
    assert [int(masks[f"l{c}"]["scale"].sum()) for c in range(2)] == [8, 8]  # 5 -> 8, 8 -> 8
    shared = C.spec([C.coupled(0.3, couplings, round_to=8, shared=True)])
    kept = [int(shared.mask(params)[f"l{c}"]["scale"].sum()) for c in range(2)]
    assert all(k % 8 == 0 or k == n for k, n in zip(kept, [10, 16])) and sum(kept) <= 24


def test_gradual_scale_is_traced_and_reaches_the_static_budget():
    params, couplings = _tree(np.random.default_rng(1), [6, 4])
    for shared in (False, True):
        spec = C.spec([C.coupled(0.5, couplings, shared=shared)])
        at = jax.jit(lambda p, f, spec=spec: spec.mask(p, scale=f))
        counts = [sum(int(at(params, f)[f"l{c}"]["scale"].sum()) for c in range(2)) for f in (0.0, 0.5, 1.0)]
        assert counts[0] == 10 and counts[0] > counts[1] > counts[2] == 5
        assert jax.tree.all(jax.tree.map(jnp.array_equal, at(params, 1.0), spec.mask(params)))


def test_a_channel_with_a_nan_slice_is_never_kept():
    params, couplings = _tree(np.random.default_rng(2), [4])
    params["l0"]["next"] = params["l0"]["next"].at[2, 0].set(jnp.nan)
    params["l0"]["scale"] = params["l0"]["scale"].at[2].set(1e6)
    for shared in (False, True):
        mask = C.spec([C.coupled(0.25, couplings, shared=shared)]).mask(params)["l0"]["scale"]
        assert not bool(mask[2]) and int(mask.sum()) == 3


def test_a_channel_of_size_d_is_d_consecutive_slices_as_an_attention_head():
    rng = np.random.default_rng(6)
    params = {
        "q": jnp.asarray(rng.normal(size=(5, 6)), jnp.float32),
        "o": jnp.asarray(rng.normal(size=(6, 5))),
    }
    params["q"] = params["q"].at[:, 2:4].multiply(10.0)  # head 1 of 3 (d = 2) is by far the largest
    spec = C.spec([C.coupled(0.7, {"heads": [("q", 1, 2), ("o", 0, 2)]})])
    masks = spec.mask(params)
    assert np.asarray(masks["q"]).all(0).tolist() == [False, False, True, True, False, False]
    assert np.asarray(masks["o"]).all(1).tolist() == [False, False, True, True, False, False]
    assert spec.constraints(params)["o"] == C.Block((2,), 0.7, axes=(0,))
    assert spec.groups(params)["q"].ids[0].tolist() == [0, 0, 1, 1, 2, 2]
    assert C.nonzero_slices(spec.project(params)["q"], 1, 2).tolist() == [False, True, False]


def test_a_leaf_in_two_couplings_is_masked_by_both_and_ranges_split_an_axis():
    rng = np.random.default_rng(8)
    # a -> b -> c, and c also reads a concatenation [b's output, a's output] in its input axis
    params = {
        "a": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=(4, 6)), jnp.float32),
        "c": jnp.asarray(rng.normal(size=(10, 2)), jnp.float32),
    }
    couplings = {"a_out": [("a", 1), ("b", 0), ("c", 0, 1, 6)], "b_out": [("b", 1), ("c", 0, 1, 0)]}
    rule = C.coupled(0.5, couplings)
    assert not rule.exact and C.coupled(0.5, {"a_out": [("a", 1)]}).exact
    spec = C.spec([rule])
    masks = spec.mask(params)
    a_keep, b_keep = np.asarray(masks["a"]).all(0), np.asarray(masks["b"]).any(0)
    assert a_keep.sum() == 2 and b_keep.sum() == 3
    # b is cut along both axes; c's rows 0..5 follow b_out, rows 6..9 follow a_out
    np.testing.assert_array_equal(np.asarray(masks["b"]), a_keep[:, None] & b_keep[None, :])
    np.testing.assert_array_equal(np.asarray(masks["c"]).all(1), np.concatenate([b_keep, a_keep]))
    assert bool(spec.is_feasible(spec.project(params)))
    with pytest.raises(
        ValueError, match=r"leaf 'c' \(10, 2\): 4 channels of 1 from slice 7 along axis 0 do not fit"
    ):
        C.spec([C.coupled(0.5, {"a_out": [("a", 1), ("c", 0, 1, 7)]})]).mask(params)
    with pytest.raises(ValueError, match="needs a member without start"):
        C.coupled(0.5, {"g": [("c", 0, 1, 0)]})


def test_per_leaf_views_are_the_slices_along_the_coupled_axis():
    params, couplings = _tree(np.random.default_rng(3), [3])
    spec = C.spec([C.coupled(0.5, couplings)])
    assert spec.constraints(params)["l0"]["conv"] == C.Block((1,), 0.5, axes=(3,))
    groups = spec.groups(params)["l0"]["next"]
    assert groups.count == 3 and groups.ids[:, 0].tolist() == [0, 1, 2]
    assert "coupled(0.5) group channels0 axis 3" in spec.describe(params)


@pytest.mark.parametrize(
    "couplings, kwargs, message",
    [
        (
            {"g": [("l0/conv", 3), ("l0/next", 1)]},
            {},
            r"group 'g': its slices disagree in size "
            r"\(channels per leaf: l0/conv \(2, 2, 3, 4\) axis 3: 4, l0/next \(4, 5\) axis 1: 5\)",
        ),
        (
            {"g": [("l0/conv", 3)], "h": [("l0/conv", 3)]},
            {},
            "group 'h': leaf 'l0/conv' axis 3 is also in group 'g' over the same slices",
        ),
        ({"g": [("l0/conv", 4)]}, {}, r"axis 4 is out of range for leaf 'l0/conv' \(2, 2, 3, 4\)"),
        ({"g": [("l0/conv", 3)]}, {"round_to": 0}, "round_to must be a positive int, got 0"),
        ({"g": [("l0/next", 1, 2)]}, {}, "has 5 slices along axis 1, not a multiple of its channel size 2"),
        ({"g": [("l0/nosuch", 0)]}, {}, "member 'l0/nosuch' is not a leaf of the params; nearby paths"),
        ({"g": [("l0/conv", 3)]}, {"normalize": "rms"}, "normalize only applies to a shared budget"),
    ],
)
def test_bad_couplings_are_errors_naming_the_group_leaves_and_shapes(couplings, kwargs, message):
    params, _ = _tree(np.random.default_rng(4), [4])
    with pytest.raises(ValueError, match=message):
        C.spec([C.coupled(0.5, couplings, **kwargs)]).mask(params)


def test_a_member_taken_by_an_earlier_rule_is_an_error():
    params, couplings = _tree(np.random.default_rng(5), [4])
    with pytest.raises(ValueError, match=r"member 'l0/scale' is taken by the earlier rule 0 \('scale'\)"):
        C.spec([("scale", None), C.coupled(0.5, couplings)]).mask(params)
