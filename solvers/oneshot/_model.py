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
from dataclasses import replace
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
from ._coupled import prune_coupled
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


def _record(path, w, w_hat, gram, seconds) -> LayerRecord:
    error = reconstruction_error(w, w_hat, gram)
    return LayerRecord(path, tuple(np.shape(w)), error, float(jnp.mean(w_hat == 0)), seconds)


def _solve_block(members, dense_leaves, calibration, targets, coupled, method, options):
    """Each layer of a block solved alone on its Gram matrix, and each of the block's coupled
    rules jointly (``coupled``: its rules restricted to the block's groups; a joint solve's
    seconds are shared evenly by its kernels): ({path: Ŵ}, [LayerRecord] in ``members`` order)."""
    pruned, records = {}, {}
    for path in members:
        if path in targets:
            w, gram = dense_leaves[path], calibration[path]
            start = time.perf_counter()
            w_hat = jax.block_until_ready(METHODS[method](w, gram, targets[path], path, **options))
            records[path] = _record(path, w, w_hat, gram, time.perf_counter() - start)
            pruned[path] = w_hat
    for rule in coupled:
        grams = {p: calibration[p] for p in rule.paths if p in calibration}
        start = time.perf_counter()
        out = jax.block_until_ready(prune_coupled(rule, dense_leaves, grams, method, **options))
        seconds = (time.perf_counter() - start) / len(grams)
        for path in grams:
            records[path] = _record(path, dense_leaves[path], out[path], grams[path], seconds)
        pruned.update(out)
    return pruned, [records[p] for p in members]


def _coupled_rules(spec: Spec, dense_leaves: dict) -> tuple[list[Coupled], dict[str, bool]]:
    """The spec's coupled rules (refusing global budgets and shared coupled budgets, which rank
    across blocks) and {member: whether it is a kernel (>= 2-d, needs calibration data)}."""
    budgets = [rule.include for rule in spec.rules if isinstance(rule, GlobalBudget)]
    shared = [rule.couplings[0][0] for rule in spec.rules if isinstance(rule, Coupled) and rule.shared]
    if budgets or shared:
        what = f"global budgets ({budgets})" if budgets else f"shared coupled budgets (groups {shared}...)"
        raise ValueError(
            f"prune_model: {what} rank weights across layers and blocks, which a block-by-block solve "
            "cannot; give each leaf its own constraint, or each coupled group its own budget"
        )
    rules = [rule for rule in spec.rules if isinstance(rule, Coupled)]
    members = {p: np.ndim(dense_leaves[p]) >= 2 for rule in rules for p in rule.paths}
    return rules, members


def _per_block(rules: list[Coupled], block_of: dict) -> dict[str, list[Coupled]]:
    """{block: each coupled rule restricted to the groups whose kernels lie in that block}; a
    group whose kernels lie in two blocks is an error naming both."""
    out: dict[str, list[Coupled]] = {}
    for rule in rules:
        split: dict[str, list] = {}
        for name, members in rule.couplings:
            blocks = sorted({block_of[p] for p, *_ in members if p in block_of})
            if len(blocks) != 1:
                raise ValueError(
                    f"prune_model: coupled group {name!r} has kernels in the blocks {blocks}; a "
                    "block-by-block solve needs each coupled group within one block (a coarser "
                    "``block`` regex joins them)"
                )
            split.setdefault(blocks[0], []).append((name, members))
        for block, couplings in split.items():
            out.setdefault(block, []).append(replace(rule, couplings=tuple(couplings)))
    return out


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
    calls, or a 1-d member of a coupled rule (a bias: it follows its channels' kernels). Coupled
    rules are solved per coupled group, jointly over its kernels (``_coupled``); each group must
    lie within one block and have its own budget (global budgets and shared coupled budgets rank
    across blocks, which a block-by-block solve cannot).

    ``chained`` (None: when possible) runs each block alone on stored inputs when the loss calls
    the blocks as a chain; False always calibrates through the whole loss. With
    ``run_dir`` each finished block's kernels and records are checkpointed there; ``resume``
    continues after the last finished block of the same run (bit-exactly).
    """
    if method not in METHODS:
        raise ValueError(f"prune_model: unknown method {method!r}; valid: {sorted(METHODS)}")
    if not batches:
        raise ValueError("prune_model: no calibration batches")
    paths, leaves, _ = leaves_with_paths(params)
    dense_leaves = dict(zip(paths, leaves))
    coupled_rules, coupled_members = _coupled_rules(spec, dense_leaves)
    constraints = jax.tree_util.tree_leaves(spec.constraints(params), is_leaf=lambda c: c is None)
    targets = {p: c for p, c in zip(paths, constraints) if c is not None and p not in coupled_members}
    calibrated = set(targets) | {p for p, kernel in coupled_members.items() if kernel}
    grams, order = capture.whole_loss(problem, frozenset(calibrated))
    missing = sorted(calibrated - set(jax.eval_shape(grams, params, state, batches[0])))
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
    block_of = {p: name for name, members in blocks.items() for p in members}
    coupled = _per_block(coupled_rules, block_of)
    followers = {
        name: [p for rule in rules for p in rule.paths if p not in block_of]
        for name, rules in coupled.items()
    }
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
    resuming = resume and run_dir is not None
    for index, (name, members) in enumerate(tqdm(blocks.items(), desc=f"oneshot {method}", disable=quiet)):
        resumed = None
        if resuming:
            template = {p: dense_leaves[p] for p in [*members, *followers.get(name, [])]}
            resumed = _resumed_block(run_dir, index, fingerprint, template)
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
            kernels, block_records = _solve_block(
                members, dense_leaves, calibration, targets, coupled.get(name, []), method, options
            )
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
