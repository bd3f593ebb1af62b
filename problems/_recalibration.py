"""BatchNorm recalibration (docs/problems.md, "BatchNorm recalibration"): a Problem's
``recalibrate(params, state, batches) -> state``, every normalization layer's running statistics
replaced by the statistics of ``batches`` that the layer computes in a training-mode forward pass.

Over batches b = 1..B, a running variable becomes the mean of its per-batch statistic; for Flax
``nn.BatchNorm`` with input x_b reduced over every axis but the feature axes,

    mean = (1/B) Σ_b E[x_b],    var = (1/B) Σ_b E[(x_b − E[x_b])²]  (biased, as in training).

A layer is found by intercepting its ``__call__`` (``nn.intercept_methods``) and what it computes
is the rule of its class (or nearest base class): ``rule(module, arguments) -> {variable name:
batch statistic}`` over ``__call__``'s arguments by name, ``{}`` when the call computes none
(evaluation mode, a frozen layer). ``register_statistics`` adds the rule of a custom layer.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prunax.constraints import leaves_with_paths

Rule = Callable[[nn.Module, dict], dict]
_RULES: dict[type, Rule] = {}


def register_statistics(module_type: type, rule: Rule) -> None:
    """Recalibrate the ``batch_stats`` of every ``module_type`` layer (and subclass) with
    ``rule(module, arguments) -> {variable name: batch statistic}``, ``arguments`` being its
    ``__call__``'s by name, defaults included; the statistic has the variable's shape."""
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise ValueError(
            f"register_statistics: module_type must be a flax.linen Module class, got {module_type!r}"
        )
    if not callable(rule):
        raise ValueError(
            f"register_statistics: rule must be callable (module, arguments) -> dict, got {rule!r}"
        )
    _RULES[module_type] = rule


def _batch_norm(module: nn.BatchNorm, arguments: dict) -> dict:
    """What ``nn.BatchNorm`` computes in training mode: mean and biased variance over every axis
    but ``module.axis`` (in at least float32, over the ``mask`` entries if given), the variance
    as max(E[x²] − E[x]², 0) under ``use_fast_variance`` (Flax's default), else E[(x − E[x])²]."""
    frozen = nn.merge_param(
        "use_running_average", module.use_running_average, arguments["use_running_average"]
    )
    if frozen:
        return {}
    x = arguments["x"]
    x = jnp.asarray(x, jnp.promote_types(module.dtype or x.dtype, jnp.float32))
    features = {a % x.ndim for a in np.atleast_1d(module.axis)}
    axes = tuple(i for i in range(x.ndim) if i not in features)
    where = None if arguments["mask"] is None else jnp.asarray(arguments["mask"], bool)
    mean = x.mean(axes, where=where)
    if module.use_fast_variance:
        var = jnp.maximum(jnp.square(x).mean(axes, where=where) - jnp.square(mean), 0.0)
    else:
        var = jnp.square(x - jnp.expand_dims(mean, axes)).mean(axes, where=where)
    return {"mean": mean, "var": var}


register_statistics(nn.BatchNorm, _batch_norm)


def _rule(module: nn.Module) -> Rule | None:
    return next((_RULES[c] for c in type(module).__mro__ if c in _RULES), None)


def _arguments(module: nn.Module, args: tuple, kwargs: dict) -> dict:
    """The arguments of ``module.__call__(*args, **kwargs)`` by name, defaults included."""
    bound = inspect.signature(type(module).__call__).bind(module, *args, **kwargs)
    bound.apply_defaults()
    return {k: v for k, v in bound.arguments.items() if k != "self"}


def _statistics(name: str, forward: Callable) -> Callable:
    """The jitted ``(params, state, batch) -> {layer path: {variable: statistic}}`` of one batch."""

    def statistics(params, state, batch):
        found = {}

        def record(call, args, kwargs, context):
            module = context.module
            rule = _rule(module) if context.method_name == "__call__" else None
            stats = rule(module, _arguments(module, args, kwargs)) if rule is not None else {}
            if stats:
                path = module.scope.path
                if path in found:
                    raise ValueError(
                        f"{name}: recalibrate: the layer {'/'.join(path)!r} runs more than once per forward "
                        "pass, so its running statistics are not the statistics of one batch"
                    )
                found[path] = stats
            return call(*args, **kwargs)

        with nn.intercept_methods(record):
            forward({"params": params, **state}, batch)
        return found

    return jax.jit(statistics)


def _written(name: str, running: Mapping, found: dict) -> dict:
    """``running`` (the ``batch_stats`` tree) with each found statistic at its layer's path, cast
    to the running variable's dtype; a ValueError naming the path when the variable is missing or
    has another shape."""
    for path, stats in found.items():
        layer = "/".join(path)
        for variable, value in stats.items():
            old = running
            for key in (*path, variable):
                old = old.get(key) if isinstance(old, Mapping) else None
            if old is None:
                raise ValueError(
                    f"{name}: recalibrate: the layer {layer!r} computes a batch {variable!r}, but "
                    f"state['batch_stats'] has no {layer}/{variable}"
                )
            if np.shape(value) != old.shape:
                raise ValueError(
                    f"{name}: recalibrate: the batch {variable!r} of layer {layer!r} has shape "
                    f"{np.shape(value)}, but state['batch_stats'] {layer}/{variable} has shape {old.shape}"
                )
            running = _set(running, (*path, variable), jnp.asarray(value, old.dtype))
    return running


def _set(tree: Mapping, path: tuple, value) -> dict:
    """A copy of the nested ``tree`` with ``value`` at ``path`` (the rest shared)."""
    head, *rest = path
    return {**tree, head: _set(tree[head], tuple(rest), value) if rest else value}


def recalibration(name: str, forward: Callable, init: Callable, train: dict) -> Callable | None:
    """The ``recalibrate`` of problem ``name``, or None when its forward pass computes no running
    statistics. ``forward(variables, batch)`` is the model's training-mode forward pass (its
    ``apply`` with ``mutable=["batch_stats"]``); ``init`` and a batch of two ``train`` examples
    (the training arrays) check once, on shapes, that every statistic has its running variable,
    and warn of running variables left as they are (a layer without a registered rule)."""
    statistics = _statistics(name, forward)
    params, state = jax.eval_shape(init, jax.random.key(0))
    found = jax.eval_shape(statistics, params, state, {k: v[:2] for k, v in train.items()})
    if not found:
        return None
    jax.eval_shape(lambda running, stats: _written(name, running, stats), state["batch_stats"], found)
    recomputed = {"/".join((*path, v)) for path, stats in found.items() for v in stats}
    stale = [p for p in leaves_with_paths(state["batch_stats"])[0] if p not in recomputed]
    if stale:
        warnings.warn(
            f"{name}: recalibrate leaves the running statistics {stale} as they are (no statistics rule "
            "for their layer, or none computed in training mode; see problems.register_statistics)",
            stacklevel=3,
        )

    def recalibrate(params, state, batches: Iterable[dict]):
        total, count = None, 0
        for batch in batches:
            stats = jax.tree_util.tree_map(
                lambda s: np.asarray(s, np.float64), statistics(params, state, batch)
            )
            total = stats if total is None else jax.tree_util.tree_map(np.add, total, stats)
            count += 1
        if not count:
            raise ValueError(f"{name}: recalibrate needs at least one batch, got none")
        means = jax.tree_util.tree_map(lambda s: s / count, total)
        return {**state, "batch_stats": _written(name, state["batch_stats"], means)}

    return recalibrate
