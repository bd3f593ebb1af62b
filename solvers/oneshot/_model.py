"""The sequential model pass of one-shot pruning (docs/oneshot.md, "Pruning a model").

Blocks (groups of constrained Dense kernels that share a path prefix, ``layer_3`` of a BERT) are
pruned in the order the model calls them. For each block, the Gram matrix of every one of its
layers' inputs is accumulated over the calibration batches by running the problem's loss with a
Flax method interceptor on ``nn.Dense``; with ``sequential`` (the standard choice) the forward
pass uses the blocks already pruned, so a block is calibrated on what the pruned model feeds it.
Each layer is then solved alone by the chosen layer method.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.linear import canonicalize_padding
from tqdm.auto import tqdm

from prunax.constraints import GlobalBudget, Spec, leaves_with_paths

from .. import _checkpoint as checkpoint
from .._fingerprint import describe, first_difference
from ._admm import admm
from ._calibration import Gram, conv_patches, reconstruction_error
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


def _kernel_path(context) -> str | None:
    """The kernel path of the Dense or Conv layer a method call of ``context`` applies, if it is one."""
    module = context.module
    if isinstance(module, (nn.Dense, nn.Conv)) and context.method_name == "__call__":
        if module.scope is not None:
            return "/".join(module.scope.path) + "/kernel"
    return None


def _conv_rows(module: nn.Conv, x, path: str):
    """The im2col patches of the inputs ``x`` of the Flax conv ``module``, one row per output position."""
    kernel_size = (module.kernel_size,) if isinstance(module.kernel_size, int) else tuple(module.kernel_size)
    padding = canonicalize_padding(module.padding, len(kernel_size))
    if (isinstance(padding, str) and padding not in ("SAME", "VALID")) or module.feature_group_count != 1:
        raise ValueError(
            f"layer {path!r}: a conv with padding {module.padding!r} and feature_group_count "
            f"{module.feature_group_count} has no im2col inputs here (supported: 'SAME', 'VALID' or "
            "explicit padding, feature_group_count 1)"
        )
    x = x.reshape((-1,) + x.shape[x.ndim - len(kernel_size) - 1 :])
    return conv_patches(
        x,
        kernel_size,
        1 if module.strides is None else module.strides,
        padding,
        1 if module.input_dilation is None else module.input_dilation,
        1 if module.kernel_dilation is None else module.kernel_dilation,
    )


def _capture(problem, wanted: frozenset):
    """A jitted (params, state, batch) -> {kernel path: (x^T x, rows)} over the Dense and Conv layers
    in ``wanted`` (a conv's rows are its im2col patches), and the order in which the loss called
    them (filled on the first trace)."""
    order: list[str] = []

    @jax.jit
    def grams(params, state, batch):
        seen = {}

        def record(next_fun, args, kwargs, context):
            path = _kernel_path(context)
            if path is not None and path in wanted and path not in seen:
                x = args[0]
                if isinstance(context.module, nn.Conv):
                    x = _conv_rows(context.module, x, path)
                x = x.reshape(-1, x.shape[-1]).astype(jnp.float32)
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


def _fingerprint(problem, params, state, spec, batches, method, block, sequential, options) -> dict:
    """What a block's checkpoint must have been written by to be resumed from: the problem, the
    dense params and state, the spec, the calibration batches (array digests) and the settings."""
    fingerprint = {
        "kind": "oneshot",
        "problem": [problem.name, problem.size, problem.config],
        "params": describe(params),
        "state": describe(state),
        "spec": describe(spec),
        "batches": describe(batches),
        "method": method,
        "options": describe(options),
        "block": block,
        "sequential": sequential,
    }
    return json.loads(json.dumps(fingerprint, default=str))  # as it reads back from disk


def _block_dir(run_dir: Path, index: int) -> Path:
    return run_dir / f"block{index:04d}"


def _resumed_block(run_dir: Path, index: int, fingerprint: dict, template: dict):
    """Block ``index``'s pruned kernels {path: leaf} and records from its checkpoint, or None."""
    where = _block_dir(run_dir, index)
    if not checkpoint.exists(where):
        return None
    meta = checkpoint.load_meta(where)
    difference = first_difference(meta["fingerprint"], fingerprint)
    if difference is not None:
        raise ValueError(
            f"resume: the checkpoint in {where} was written by a different one-shot run ({difference}); "
            f"delete {run_dir} or choose another run folder to start over"
        )
    records = [LayerRecord(**{**r, "shape": tuple(r["shape"])}) for r in meta["records"]]
    return checkpoint.load(where, template), records


def prune_model(
    problem,
    params,
    state,
    spec: Spec,
    batches: list,
    method: str = "admm",
    block: str = r"^[^/]+",
    sequential: bool = True,
    run_dir=None,
    resume: bool = False,
    quiet: bool = True,
    **options,
):
    """Prune every leaf ``spec`` constrains, block by block, with the one-shot layer ``method``
    ("magnitude", "wanda", "sparsegpt" or "admm"; ``options`` go to it) from the calibration
    ``batches`` (a list of batches the problem's loss takes). ``block`` is a regex whose match at
    the start of a kernel's path names its block. Returns (pruned params, [LayerRecord]).

    Every constrained leaf must be the kernel of an ``nn.Dense`` or ``nn.Conv`` that the loss
    calls, and every constraint per-leaf (a global budget couples layers, which a layer-wise solve
    cannot). With ``run_dir`` each finished block's kernels and records are checkpointed there;
    ``resume`` continues after the last finished block of the same run (bit-exactly).
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
            "an nn.Dense or nn.Conv that the problem's loss calls"
        )
    blocks: dict[str, list[str]] = {}
    for path in order:
        found = re.match(block, path)
        blocks.setdefault(found.group(0) if found else path, []).append(path)
    run_dir = None if run_dir is None else Path(run_dir)
    if run_dir is not None:
        fingerprint = _fingerprint(problem, params, state, spec, batches, method, block, sequential, options)
    dense = params
    records = []
    solve = METHODS[method]
    resuming = resume and run_dir is not None
    for index, members in enumerate(tqdm(blocks.values(), desc=f"oneshot {method}", disable=quiet)):
        if resuming:
            resumed = _resumed_block(run_dir, index, fingerprint, {p: dense_leaves[p] for p in members})
            if resumed is not None:
                for path, w_hat in resumed[0].items():
                    params = _set_leaf(params, path, w_hat)
                records += resumed[1]
                continue
            resuming = False  # the first unfinished block: everything after it is redone
        calibration = _accumulate(grams, params if sequential else dense, state, batches)
        pruned, block_records = {}, []
        for path in members:
            w = dense_leaves[path]
            gram = calibration[path]
            start = time.perf_counter()
            w_hat = jax.block_until_ready(solve(w, gram, targets[path], path, **options))
            seconds = time.perf_counter() - start
            block_records.append(
                LayerRecord(
                    path,
                    tuple(np.shape(w)),
                    reconstruction_error(w, w_hat, gram),
                    float(jnp.mean(w_hat == 0)),
                    seconds,
                )
            )
            params = _set_leaf(params, path, w_hat)
            pruned[path] = w_hat
        if run_dir is not None:
            meta = {"fingerprint": fingerprint, "records": [r._asdict() for r in block_records]}
            checkpoint.save(_block_dir(run_dir, index), pruned, meta)
        records += block_records
    return params, records
