import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from prunax.constraints import (
    NM,
    Block,
    ColumnSign,
    Pattern,
    Unstructured,
    global_,
    kept_count,
    mine_patterns,
    spec,
)


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3), name="conv1")(x))
        x = nn.relu(nn.Conv(16, (3, 3), name="conv2")(x))
        x = nn.Dense(32, name="dense1")(x.mean((1, 2)))
        return nn.Dense(10, name="dense2")(x)


@pytest.fixture(scope="module")
def params():
    return Net().init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]


def test_flax_tree_first_match_wins_and_none_is_unconstrained(params):
    s = spec(
        [
            (r"conv2/kernel$", Block((1,), 0.5, axes=(3,)) & ColumnSign(8, axis=2)),
            (r"conv\d/kernel$", Unstructured(0.5)),  # only conv1 is left for it
            (r"dense2", None),
            (r"dense\d/kernel$", NM(2, 4, axis=0)),
        ]
    )
    projected = s.project(params)
    assert bool(s.is_feasible(projected))
    assert int(jnp.sum(projected["conv1"]["kernel"] != 0)) == kept_count(72, 0.5)
    np.testing.assert_array_equal(projected["dense2"]["kernel"], params["dense2"]["kernel"])
    np.testing.assert_array_equal(projected["conv1"]["bias"], params["conv1"]["bias"])
    table = s.describe(params)
    assert "conv2/kernel" in table and "unconstrained" in table and "0.5000" in table
    masks = s.mask(params)
    assert jax.tree_util.tree_structure(masks) == jax.tree_util.tree_structure(params)
    constraints = s.constraints(params)
    assert constraints["dense2"]["kernel"] is None and isinstance(
        constraints["conv1"]["kernel"], Unstructured
    )
    groups = s.groups(params)
    assert groups["conv2"]["kernel"].count == 16 and groups["dense2"]["bias"] is None


def test_rule_matching_nothing_lists_nearby_paths(params):
    with pytest.raises(
        ValueError,
        match=r"spec rule 0 \('conv3/kernel\$'\) claims no leaf: it matches no leaf; "
        r"nearby paths: \['conv2/kernel', 'conv1/kernel'",
    ):
        spec([(r"conv3/kernel$", Unstructured(0.5))]).mask(params)
    with pytest.raises(ValueError, match="taken by an earlier rule"):
        spec([(r"kernel$", None), (r"conv1/kernel$", Unstructured(0.5))]).mask(params)


def test_leaf_errors_name_path_shape_and_constraint():
    tree = {"emb": {"ids": jnp.arange(4)}, "conv": {"kernel": jnp.ones((5, 5, 1, 2))}}
    with pytest.raises(ValueError, match=r"on leaf 'emb/ids' with shape \(4,\): dtype int32"):
        spec([(r"ids", Unstructured(0.5))]).project(tree)
    patterns = mine_patterns(np.ones((3, 3)), (0, 1), (3, 3), 4, 1)
    with pytest.raises(ValueError, match=r"leaf 'conv/kernel' with shape \(5, 5, 1, 2\)"):
        spec([(r"kernel", Pattern(patterns, axes=(0, 1)))]).project(tree)
    with pytest.raises(ValueError, match="rule 0"):
        spec([("[", None)])
    with pytest.raises(ValueError, match="not a constraint"):
        spec([("a", 0.5)])


def test_global_budget_ranks_across_leaves(params):
    s = spec([global_(Unstructured(0.9), include=r"kernel$")])
    masks = s.mask(params)
    kernels = [m for p, m in jax.tree_util.tree_flatten_with_path(masks)[0] if "kernel" in str(p[-1])]
    total = sum(int(m.size) for m in kernels)
    assert sum(int(m.sum()) for m in kernels) == kept_count(total, 0.9)
    # one threshold: every kept |w| is at least every dropped |w| across layers
    leaves = [w for p, w in jax.tree_util.tree_flatten_with_path(params)[0] if "kernel" in str(p[-1])]
    kept = np.concatenate([np.abs(np.asarray(w))[np.asarray(m)] for w, m in zip(leaves, kernels)])
    dropped = np.concatenate([np.abs(np.asarray(w))[~np.asarray(m)] for w, m in zip(leaves, kernels)])
    assert kept.min() >= dropped.max()
    assert bool(s.is_feasible(s.project(params))) and not bool(s.is_feasible(params))


def test_global_block_budget_and_normalisation():
    tree = {"a": jnp.ones((4, 4)) * 100.0, "b": jnp.ones((4, 4))}
    plain = spec([global_(Block((1,), 0.5, axes=(1,)), include=".")]).mask(tree)
    assert int(plain["a"].sum()) == 16 and int(plain["b"].sum()) == 0  # the big layer takes all
    fair = spec([global_(Block((1,), 0.5, axes=(1,)), include=".", normalize="max")]).mask(tree)
    assert int(fair["a"].sum()) + int(fair["b"].sum()) == 16  # ties broken by position
    with pytest.raises(ValueError, match="normalize"):
        global_(Unstructured(0.5), include=".", normalize="l1")
    with pytest.raises(ValueError, match="only Unstructured or Block"):
        global_(NM(2, 4, 0), include=".")
    with pytest.raises(ValueError, match="not a valid regex"):
        global_(Unstructured(0.5), include="(")


def test_normalisers_ignore_non_finite_scores():
    """One NaN made a leaf's rms NaN (every entry dropped); one inf made its max inf (the inf
    dropped as inf / inf, the rest zeroed)."""
    masks = spec([global_(Unstructured(0.5), ".", normalize="rms")]).mask(
        {"a": jnp.asarray([1.0, 2.0, 3.0, np.nan]), "b": jnp.ones(4)}
    )  # a / rms(1, 2, 3) = 0.46, 0.93, 1.39, NaN; b = 1: keep 1.39 and the first three 1s
    np.testing.assert_array_equal(masks["a"], [False, False, True, False])
    np.testing.assert_array_equal(masks["b"], [True, True, True, False])
    masks = spec([global_(Unstructured(0.5), ".", normalize="max")]).mask(
        {"a": jnp.asarray([1.0, 2.0, 3.0, np.inf]), "b": jnp.full(4, 0.1)}
    )  # a / 3 = 0.33, 0.67, 1, inf; b = 1: keep inf, then the 1s by position
    np.testing.assert_array_equal(masks["a"], [False, False, True, True])
    np.testing.assert_array_equal(masks["b"], [True, True, False, False])


def _normalised(scores: np.ndarray, normalize: str) -> np.ndarray:
    """NumPy transcription: divide by the rms or max of the finite scores."""
    finite = scores[np.isfinite(scores)]
    norm = 0.0 if not finite.size else np.sqrt(np.mean(finite**2)) if normalize == "rms" else finite.max()
    return scores / (norm + 1e-30)


special = (
    st.integers(-4, 4).map(float) | st.floats(0.5, 8, width=32) | st.sampled_from([np.nan, np.inf, -np.inf])
)


@given(
    a=hnp.arrays(np.float32, 6, elements=special),
    b=hnp.arrays(np.float32, 5, elements=special),
    normalize=st.sampled_from(["rms", "max"]),
    sparsity=st.sampled_from([0.3, 0.5, 0.8]),
)
def test_normalised_global_budget_follows_the_top_k_rule(a, b, normalize, sparsity):
    masks = spec([global_(Unstructured(sparsity), ".", normalize=normalize)]).mask(
        {"a": jnp.asarray(a), "b": jnp.asarray(b)}
    )
    kept = np.concatenate([np.asarray(masks["a"]), np.asarray(masks["b"])])
    scores = np.concatenate([_normalised(np.abs(x.astype(np.float64)), normalize) for x in (a, b)])
    numbers = ~np.isnan(scores)
    assert kept.sum() == min(kept_count(11, sparsity), numbers.sum()) and not (kept & ~numbers).any()
    if kept.any() and (numbers & ~kept).any():  # one threshold: no dropped score above a kept one
        assert scores[kept].min() >= scores[numbers & ~kept].max() * (1 - 1e-6)


def test_size_zero_and_scalar_leaves_do_not_crash():
    tree = {"empty": jnp.zeros((0, 3)), "scalar": jnp.asarray(2.0), "w": jnp.arange(6.0).reshape(2, 3)}
    s = spec([(r".", Unstructured(0.5))])
    out = s.project(tree)
    assert out["empty"].shape == (0, 3) and float(out["scalar"]) == 2.0 and int(jnp.sum(out["w"] != 0)) == 3
    assert bool(s.is_feasible(out))
    assert "empty" in s.describe(tree)


@pytest.mark.parametrize("normalize", [None, "rms", "max"])
@pytest.mark.parametrize(
    ("inner", "kept"),
    [(Unstructured(0.5), [False, True, False, True]), (Block((2,), 0.5, (0,)), [True, True, False, False])],
)
def test_global_budgets_over_an_empty_leaf(inner, kept, normalize):
    """A global Block budget crashed on an empty leaf (its scores reshaped a 0-size array with -1),
    and normalize="max" took the max of no scores."""
    tree = {"empty": jnp.zeros((0, 3)), "w": jnp.asarray([[1.0], [4.0], [2.0], [3.0]])}
    masks = spec([global_(inner, include=r".", normalize=normalize)]).mask(tree)
    assert masks["empty"].shape == (0, 3)
    np.testing.assert_array_equal(np.asarray(masks["w"])[:, 0], kept)


def test_spec_methods_jit(params):
    s = spec([(r"kernel$", Unstructured(0.8))])
    eager = s.project(params)
    jitted = jax.jit(s.project)(params)
    jax.tree_util.tree_map(np.testing.assert_array_equal, eager, jitted)


def test_scale_ramps_every_sparsity_and_leaves_structure_in_full(params):
    patterns = mine_patterns(params["conv2"]["kernel"], (0, 1), (3, 3), 4, 4)
    s = spec(
        [
            (r"conv1/kernel$", Block((1,), 0.5, axes=(3,)) & ColumnSign(4, axis=2)),
            (r"conv2/kernel$", Pattern(patterns, axes=(0, 1), connectivity=0.5)),
            global_(Unstructured(0.9), include=r"dense\d/kernel$"),
        ]
    )
    masked = jax.jit(s.mask)
    for scale in (0.0, 0.3, 1.0):
        masks = masked(params, jnp.float32(scale))
        filters = int(jnp.sum(jnp.any(masks["conv1"]["kernel"], axis=(0, 1, 2))))
        assert filters >= 8 - int(scale * 4), scale  # at most floor(scale * 4) of 8 filters dropped
        assert bool(ColumnSign(4, axis=2).is_feasible(jnp.where(masks["conv1"]["kernel"], 1.0, 0.0)))
        kernels = int(jnp.sum(jnp.any(masks["conv2"]["kernel"], axis=(0, 1))))
        assert kernels == 8 * 16 - int(scale * 64)
        dense = [params[d]["kernel"].size for d in ("dense1", "dense2")]
        kept = sum(int(masks[d]["kernel"].sum()) for d in ("dense1", "dense2"))
        assert kept == int(kept_count(sum(dense), 0.9, jnp.float32(scale)))
    jax.tree_util.tree_map(np.testing.assert_array_equal, masked(params, jnp.float32(1.0)), s.mask(params))
    assert masked._cache_size() == 1
