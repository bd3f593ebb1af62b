"""``classifier``: a ready Problem from a Flax softmax classifier and arrays (docs/problems.md).

The public way to prune your own model, and how ``resnet``, ``bcnn`` and ``quantum`` are built.
The loss is the mean softmax cross-entropy; BatchNorm statistics, if the model has any, live in
``state["batch_stats"]`` and ``recalibrate`` recomputes them from training batches.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._batching import padded_map, select
from ._compaction import Compacted
from ._factory import assemble
from ._protocol import Problem, Recipe, check_batch, data_digest
from ._recalibration import recalibration
from ._recipes import adam_recipe

KERNELS = r"(^|/)kernel$"  # every Dense and Conv weight matrix


def classifier(
    name: str,
    model: nn.Module,
    train: tuple,
    test: tuple,
    *,
    prunable: str = KERNELS,
    recipe: Recipe | None = None,
    groups: dict | None = None,
    metrics: Callable[[dict], dict] | None = None,
    size: str = "custom",
    config: dict | None = None,
    compaction: Callable | None = None,
) -> Problem:
    """The Problem of classifying ``train`` and ``test``, each ``(x, y)``: x float (N, ...), y
    integer labels (N,) in [0, C), with ``model(x)`` returning (N, C) logits.

    If the model's ``__call__`` takes ``train``, it gets ``train=True`` in the loss (updating
    BatchNorm statistics) and in ``recalibrate``, ``False`` in ``evaluate``; the loss's key is the
    "dropout" RNG. ``recalibrate`` is None for a model without running statistics.
    ``prunable``: the leaves pruned by default (every Dense/Conv kernel). ``recipe``: the dense
    training (default ``adam_recipe()``: Adam 1e-3, 5 epochs, batch 64 or the training set if
    smaller). ``groups``: {structure: sparsity -> Spec}. ``metrics(params)``: extra entries of
    ``evaluate`` (e.g. operation counts) besides "accuracy" and "loss" (mean negative
    log-likelihood). ``config`` keys the pretrained cache; by default the model's repr and a
    digest of the training data. ``compaction(model) -> (coupled, compact)``: the model's coupled
    structures ({structure: (sparsity, round_to, shared) -> Spec}, ``Problem.coupled``) and
    ``compact(params, state) -> (params, state, smaller model, widths)`` removing the all-zero
    coupled channels; the Problem's ``compact`` wraps it (the smaller model as a classifier of the
    same data, its config the widths added to this one's).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"{name}: model must be a flax.linen Module, got {type(model).__name__}")
    splits = {"train": _examples(name, "train", train), "test": _examples(name, "test", test)}
    if splits["train"]["x"].shape[1:] != splits["test"]["x"].shape[1:]:
        raise ValueError(
            f"{name}: train and test x must have the same example shape, got "
            f"{splits['train']['x'].shape[1:]} and {splits['test']['x'].shape[1:]}"
        )
    mode = (lambda training: {"train": training}) if _takes_train(model) else (lambda training: {})
    _check_logits(name, model, splits, mode)
    if recipe is None:
        recipe = adam_recipe(batch_size=min(64, len(splits["train"]["y"])))
    if config is None:
        config = {"model": repr(model), "data": data_digest(splits["train"])}
    closures = _closures(name, model, splits, mode, metrics)
    closures, forward = closures[:3], closures[3]

    coupled, cut = compaction(model) if compaction is not None else ({}, None)

    def compact(params, state):
        smaller_params, smaller_state, smaller_model, widths = cut(params, state)
        smaller = classifier(
            name,
            smaller_model,
            train,
            test,
            prunable=prunable,
            recipe=recipe,
            groups=groups,
            metrics=metrics,
            size=size,
            config={**config, **widths},
            compaction=compaction,
        )
        return Compacted(smaller_params, smaller_state, widths, smaller)

    return assemble(
        name,
        size,
        config,
        splits,
        closures,
        metric="accuracy",
        prunable=prunable,
        recipe=recipe,
        groups=groups or {},
        recalibrate=recalibration(name, _training_forward(model, mode), closures[0], splits["train"]),
        coupled=coupled,
        forward=forward,
        compact=None if compaction is None else compact,
    )


def _examples(name: str, split: str, pair) -> dict[str, np.ndarray]:
    """``{"x": float32 (N, ...), "y": int32 (N,)}`` from a user's ``(x, y)``, or a ValueError
    naming the argument and the shapes."""
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise ValueError(f"{name}: {split} must be a pair (x, y) of arrays, got {type(pair).__name__}")
    x, y = np.asarray(pair[0]), np.asarray(pair[1])
    if x.ndim < 2 or x.dtype.kind != "f":
        raise ValueError(
            f"{name}: {split} x must be a float array of shape (examples, ...), got shape {x.shape} "
            f"and dtype {x.dtype}"
        )
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(
            f"{name}: {split} y must be integer class labels of shape (examples,), got shape {y.shape} "
            f"and dtype {y.dtype}"
        )
    if len(x) != len(y):
        raise ValueError(
            f"{name}: {split} x and y must have one row per example, got x {x.shape} and y {y.shape}"
        )
    if not len(y):
        raise ValueError(f"{name}: {split} has no examples (x {x.shape})")
    if y.min() < 0:
        raise ValueError(f"{name}: {split} y must be class labels >= 0, got a minimum of {y.min()}")
    return {"x": x.astype(np.float32, copy=False), "y": y.astype(np.int32, copy=False)}


def _takes_train(model: nn.Module) -> bool:
    return "train" in inspect.signature(model.__call__).parameters


def _check_logits(name: str, model: nn.Module, splits: dict, mode: Callable) -> None:
    """A ValueError unless ``model`` maps a batch to (batch, C) logits with C above every label."""
    x = jnp.asarray(splits["train"]["x"][:2])
    variables = jax.eval_shape(lambda key: model.init(key, x, **mode(True)), jax.random.key(0))
    logits = jax.eval_shape(lambda v: model.apply(v, x, **mode(False)), variables)
    top = max(int(part["y"].max()) for part in splits.values())
    if not hasattr(logits, "shape") or logits.shape[:1] != x.shape[:1] or len(logits.shape) != 2:
        shape = getattr(logits, "shape", type(logits).__name__)
        raise ValueError(
            f"{name}: model(x) must return logits of shape (batch, classes), got {shape} for x {x.shape}"
        )
    if logits.shape[1] <= top:
        raise ValueError(f"{name}: model gives {logits.shape[1]} logits but the labels reach {top}")


def _training_forward(model: nn.Module, mode: Callable) -> Callable:
    """``forward(variables, batch)``: the training-mode pass that recalibration intercepts (a fixed
    dropout key: the statistics only need some training-mode pass, the same one each time)."""

    def forward(variables, batch):
        rngs = {"dropout": jax.random.key(0)}
        return model.apply(variables, batch["x"], **mode(True), mutable=["batch_stats"], rngs=rngs)

    return forward


def _closures(name: str, model: nn.Module, splits: dict, mode: Callable, metrics: Callable | None):
    """``(init, loss, evaluate, forward)`` of the softmax classifier over ``splits``."""
    expected = {"x": ((None, *splits["train"]["x"].shape[1:]), "f"), "y": ((None,), "i")}

    def init(key):
        variables = model.init(key, jnp.asarray(splits["train"]["x"][:2]), **mode(True))
        return variables["params"], {"batch_stats": variables.get("batch_stats", {})}

    def loss(params, state, batch, key):
        check_batch(batch, expected, name)
        logits, updated = model.apply(
            {"params": params, **state},
            batch["x"],
            **mode(True),
            mutable=["batch_stats"],
            rngs={"dropout": key},
        )
        value = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["y"])
        return value, ({"batch_stats": updated.get("batch_stats", {})}, {"accuracy": accuracy})

    def forward(params, state, batch):
        return model.apply({"params": params, **state}, batch["x"], **mode(False))

    @jax.jit
    def _predict(params, state, x):
        return forward(params, state, {"x": x})

    def evaluate(params, state, split: str = "test"):
        arrays = select(name, splits, split)
        predict = lambda batch: _predict(params, state, batch["x"])  # noqa: E731
        logits = padded_map(predict, {"x": arrays["x"]}, 500).astype(np.float64)
        labels = arrays["y"]
        shifted = logits - logits.max(-1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        return {
            "accuracy": float(np.mean(np.argmax(logits, -1) == labels)),
            "loss": float(-np.mean(logp[np.arange(len(labels)), labels])),
            **(metrics(params) if metrics else {}),
        }

    return init, loss, evaluate, forward
