"""The closures of a softmax classifier problem: a Flax ``model(x, train)`` returning logits
(BatchNorm statistics, if any, in ``state["batch_stats"]``) over arrays ``{"x", "y"}``."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._protocol import check_batch, epoch_batches, padded_batches


def classification(name: str, model, train: dict, test: dict, extra_metrics: Callable | None = None):
    """``(init, loss, evaluate, batches)`` for the Problem protocol. The loss is the mean softmax
    cross-entropy; ``evaluate(params, state, split="test")`` gives accuracy, the mean negative
    log-likelihood and ``extra_metrics(params)`` (e.g. operation or gate counts)."""
    expected = {"x": ((None, *train["x"].shape[1:]), "f"), "y": ((None,), "i")}

    def init(key):
        variables = model.init(key, jnp.asarray(train["x"][:2]), train=True)
        return variables["params"], {"batch_stats": variables.get("batch_stats", {})}

    def loss(params, state, batch, key):
        del key  # no dropout or augmentation
        check_batch(batch, expected, name)
        logits, updated = model.apply(
            {"params": params, **state}, batch["x"], train=True, mutable=["batch_stats"]
        )
        value = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["y"])
        return value, ({"batch_stats": updated.get("batch_stats", {})}, {"accuracy": accuracy})

    @jax.jit
    def _predict(params, state, x):
        return model.apply({"params": params, **state}, x, train=False)

    def evaluate(params, state, split: str = "test"):
        arrays = test if split == "test" else train
        correct, nll = 0, 0.0
        for batch, valid in padded_batches(arrays, 500):
            logits = np.asarray(_predict(params, state, batch["x"]), np.float64)[:valid]
            labels = batch["y"][:valid]
            correct += int(np.sum(np.argmax(logits, -1) == labels))
            shifted = logits - logits.max(-1, keepdims=True)
            logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
            nll -= float(np.sum(logp[np.arange(valid), labels]))
        total = len(arrays["y"])
        return {
            "accuracy": correct / total,
            "loss": nll / total,
            **(extra_metrics(params) if extra_metrics else {}),
        }

    def batches(split, key, batch_size):
        if split == "train":
            return epoch_batches(train, key, batch_size)
        if split == "test":
            return (b for b, _ in padded_batches(test, batch_size))
        raise ValueError(f"{name}: split must be 'train' or 'test', got {split!r}")

    return init, loss, evaluate, batches
