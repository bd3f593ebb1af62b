"""The sequential model pass of one-shot pruning (docs/oneshot.md, "Pruning a model").

Blocks (groups of constrained Dense kernels that share a path prefix, ``layer_3`` of a BERT) are
pruned in the order the model calls them. For each block, the Gram matrix of every one of its
layers' inputs is accumulated over the calibration batches by running the problem's loss with a
Flax method interceptor on ``nn.Dense``; with ``sequential`` (the standard choice) the forward
pass uses the blocks already pruned, so a block is calibrated on what the pruned model feeds it.
Each layer is then solved alone by the chosen layer method.
"""

from __future__ import annotations

import re
import time
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from prunax.constraints import GlobalBudget, Spec, leaves_with_paths

from ._admm import admm
from ._calibration import Gram, reconstruction_error
from ._scores import magnitude, wanda
from ._sparsegpt import sparsegpt

METHODS = {"magnitude": magnitude, "wanda": wanda, "sparsegpt": sparsegpt, "admm": admm}


class LayerRecord(NamedTuple):
    """One pruned layer: its kernel path and shape, ||X(W − Ŵ)|| / ||X W|| on its calibration
    inputs, the fraction of zeros, and the seconds its solve took."""

    path: str
    shape: tuple
    error: float
    sparsity: float
    seconds: float


def _dense_kernel_path(context) -> str | None:
    module = context.module
    if isinstance(module, nn.Dense) and context.method_name == "__call__" and module.scope is not None:
        return "/".join(module.scope.path) + "/kernel"
    return None


def _capture(problem, wanted: frozenset):
    """A jitted (params, state, batch) -> {kernel path: (x^T x, rows)} over the Dense layers in
    ``wanted``, and the order in which the loss called them (filled on the first trace)."""
    order: list[str] = []

    @jax.jit
    def grams(params, state, batch):
        seen = {}

        def record(next_fun, args, kwargs, context):
            path = _dense_kernel_path(context)
            if path is not None and path in wanted and path not in seen:
                x = args[0].reshape(-1, args[0].shape[-1]).astype(jnp.float32)
                seen[path] = (x.T @ x, x.shape[0])
                if path not in order:
                    order.append(path)
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(record):
            problem.loss(params, state, batch, jax.random.key(0))
        return seen

    return grams, order


def _accumulate(grams, params, state, batches) -> dict[str, Gram]:
    total: dict[str, Gram] = {}
    for batch in batches:
        for path, (matrix, rows) in grams(params, state, batch).items():
            before = total.get(path)
            total[path] = (
                Gram(matrix, int(rows))
                if before is None
                else Gram(before.matrix + matrix, before.rows + int(rows))
            )
    return total


def _set_leaf(params, path: str, value):
    paths, leaves, treedef = leaves_with_paths(params)
    leaves = [value if p == path else leaf for p, leaf in zip(paths, leaves)]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def prune_model(
    problem,
    params,
    state,
    spec: Spec,
    batches: list,
    method: str = "admm",
    block: str = r"^[^/]+",
    sequential: bool = True,
    quiet: bool = True,
    **options,
):
    """Prune every leaf ``spec`` constrains, block by block, with the one-shot layer ``method``
    ("magnitude", "wanda", "sparsegpt" or "admm"; ``options`` go to it) from the calibration
    ``batches`` (a list of batches the problem's loss takes). ``block`` is a regex whose match at
    the start of a kernel's path names its block. Returns (pruned params, [LayerRecord]).

    Every constrained leaf must be the kernel of an ``nn.Dense`` that the loss calls, and every
    constraint per-leaf (a global budget couples layers, which a layer-wise solve cannot).
    """
    if method not in METHODS:
        raise ValueError(f"prune_model: unknown method {method!r}; valid: {sorted(METHODS)}")
    if not batches:
        raise ValueError("prune_model: no calibration batches")
    budgets = [rule.include for rule in spec.rules if isinstance(rule, GlobalBudget)]
    if budgets:
        raise ValueError(
            f"prune_model: global budgets ({budgets}) couple layers, which a layer-wise solve cannot; "
            "give each leaf its own constraint"
        )
    paths, leaves, _ = leaves_with_paths(params)
    dense_leaves = dict(zip(paths, leaves))
    constraints = jax.tree_util.tree_leaves(spec.constraints(params), is_leaf=lambda c: c is None)
    targets = {p: c for p, c in zip(paths, constraints) if c is not None}
    grams, order = _capture(problem, frozenset(targets))
    first = _accumulate(grams, params, state, batches[:1])
    missing = sorted(set(targets) - set(first))
    if missing:
        raise ValueError(
            f"prune_model: no calibration data for {missing}: a constrained leaf must be the kernel of "
            "an nn.Dense that the problem's loss calls"
        )
    blocks: dict[str, list[str]] = {}
    for path in order:
        found = re.match(block, path)
        blocks.setdefault(found.group(0) if found else path, []).append(path)
    dense = params
    records = []
    solve = METHODS[method]
    for members in tqdm(blocks.values(), desc=f"oneshot {method}", disable=quiet):
        calibration = _accumulate(grams, params if sequential else dense, state, batches)
        for path in members:
            w = dense_leaves[path]
            gram = calibration[path]
            start = time.perf_counter()
            w_hat = jax.block_until_ready(solve(w, gram, targets[path], path, **options))
            seconds = time.perf_counter() - start
            records.append(
                LayerRecord(
                    path,
                    tuple(np.shape(w)),
                    reconstruction_error(w, w_hat, gram),
                    float(jnp.mean(w_hat == 0)),
                    seconds,
                )
            )
            params = _set_leaf(params, path, w_hat)
    return params, records
