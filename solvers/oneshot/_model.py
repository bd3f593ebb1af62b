"""The sequential model pass of one-shot pruning (docs/oneshot.md, "Pruning a model").

Blocks (groups of constrained Dense or Conv kernels that share a path prefix, ``layer_3`` of a
BERT) are pruned in the order the model calls them. For each block, the Gram matrix of every one
of its layers' inputs is accumulated over the calibration batches (``_capture``: through the
block alone when the blocks form a chain, else through the whole loss); with ``sequential`` (the
standard choice) the inputs come from the blocks already pruned, so a block is calibrated on what
the pruned model feeds it. Each layer is then solved alone by the chosen layer method, and each
finished block can be checkpointed.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from prunax.constraints import Coupled, GlobalBudget, Spec, leaves_with_paths

from .. import _checkpoint as checkpoint
from .._fingerprint import describe, first_difference
from . import _capture as capture
from ._admm import admm
from ._calibration import reconstruction_error
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


def _set_leaf(params, path: str, value):
    paths, leaves, treedef = leaves_with_paths(params)
    leaves = [value if p == path else leaf for p, leaf in zip(paths, leaves)]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _fingerprint(problem, params, state, spec, batches, settings, options) -> dict:
    """What a block's checkpoint must have been written by to be resumed from: the problem, the
    dense params and state, the spec, the calibration batches (array digests) and the settings."""
    fingerprint = {
        "kind": "oneshot",
        "problem": [problem.name, problem.size, problem.config],
        "params": describe(params),
        "state": describe(state),
        "spec": describe(spec),
        "batches": describe(batches),
        **settings,
        "options": describe(options),
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


def _solve_block(members, dense_leaves, calibration, targets, solve, options):
    """Each layer of a block solved alone on its Gram matrix: ({path: Ŵ}, [LayerRecord])."""
    kernels, records = {}, []
    for path in members:
        w, gram = dense_leaves[path], calibration[path]
        start = time.perf_counter()
        w_hat = jax.block_until_ready(solve(w, gram, targets[path], path, **options))
        seconds = time.perf_counter() - start
        error = reconstruction_error(w, w_hat, gram)
        records.append(LayerRecord(path, tuple(np.shape(w)), error, float(jnp.mean(w_hat == 0)), seconds))
        kernels[path] = w_hat
    return kernels, records


def prune_model(
    problem,
    params,
    state,
    spec: Spec,
    batches: list,
    method: str = "admm",
    block: str = r"^[^/]+",
    sequential: bool = True,
    chained: bool | None = None,
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
    cannot). ``chained`` (None: when possible) runs each block alone on stored inputs when the
    loss calls the blocks as a chain; False always calibrates through the whole loss. With
    ``run_dir`` each finished block's kernels and records are checkpointed there; ``resume``
    continues after the last finished block of the same run (bit-exactly).
    """
    if method not in METHODS:
        raise ValueError(f"prune_model: unknown method {method!r}; valid: {sorted(METHODS)}")
    if not batches:
        raise ValueError("prune_model: no calibration batches")
    budgets = [rule.include for rule in spec.rules if isinstance(rule, GlobalBudget | Coupled)]
    if budgets:
        raise ValueError(
            f"prune_model: global budgets and coupled groups ({budgets}) span layers, which a "
            "layer-wise solve cannot; give each leaf its own constraint"
        )
    paths, leaves, _ = leaves_with_paths(params)
    dense_leaves = dict(zip(paths, leaves))
    constraints = jax.tree_util.tree_leaves(spec.constraints(params), is_leaf=lambda c: c is None)
    targets = {p: c for p, c in zip(paths, constraints) if c is not None}
    grams, order = capture.whole_loss(problem, frozenset(targets))
    missing = sorted(set(targets) - set(jax.eval_shape(grams, params, state, batches[0])))
    if missing:
        raise ValueError(
            f"prune_model: no calibration data for {missing}: a constrained leaf must be the kernel of "
            "an nn.Dense or nn.Conv that the problem's loss calls"
        )
    blocks: dict[str, list[str]] = {}
    for path in order:
        found = re.match(block, path)
        blocks.setdefault(found.group(0) if found else path, []).append(path)
    names = list(blocks)
    chain = None if chained is False else capture.probe(problem, params, state, batches[0], names)
    if chained and chain is None:
        raise ValueError(
            f"prune_model: chained=True, but the blocks {names[:3]}{'...' if len(names) > 3 else ''} are "
            "not modules the loss calls as a chain (each once, in order, the next taking the previous "
            "one's output first and the same other arguments); use chained=None or False"
        )
    run_dir = None if run_dir is None else Path(run_dir)
    if run_dir is not None:
        settings = dict(method=method, block=block, sequential=sequential, chained=chain is not None)
        fingerprint = _fingerprint(problem, params, state, spec, batches, settings, options)
    if chain is not None:
        first = capture.first_inputs(problem, chain, names[0])
        inputs = [first(params, state, b) for b in batches]
    dense = params
    records = []
    solve = METHODS[method]
    resuming = resume and run_dir is not None
    for index, (name, members) in enumerate(tqdm(blocks.items(), desc=f"oneshot {method}", disable=quiet)):
        resumed = None
        if resuming:
            resumed = _resumed_block(run_dir, index, fingerprint, {p: dense_leaves[p] for p in members})
            resuming = resumed is not None  # after the first unfinished block, everything is redone
        if resumed is not None:
            kernels, block_records = resumed
        else:
            source = params if sequential else dense  # block ``name`` itself is still dense in both
            if chain is None:
                calibration = capture.accumulate(grams(source, state, b) for b in batches)
            else:
                variables = capture.block_variables(source, state, name)
                inside = frozenset(p[len(name) + 1 :] for p in members)
                pieces = [capture.run_block(chain, name, variables, x, inside)[1] for x in inputs]
                calibration = {f"{name}/{p}": g for p, g in capture.accumulate(pieces).items()}
            kernels, block_records = _solve_block(members, dense_leaves, calibration, targets, solve, options)
            if run_dir is not None:
                meta = {"fingerprint": fingerprint, "records": [r._asdict() for r in block_records]}
                checkpoint.save(_block_dir(run_dir, index), kernels, meta)
        for path, w_hat in kernels.items():
            params = _set_leaf(params, path, w_hat)
        records += block_records
        if chain is not None and index + 1 < len(names):
            variables = capture.block_variables(params if sequential else dense, state, name)
            inputs = [[capture.run_block(chain, name, variables, x)[0], *x[1:]] for x in inputs]
    return params, records
