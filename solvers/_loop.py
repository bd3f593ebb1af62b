"""The epoch loop over a Problem (docs/solvers.md, "The epoch loop"): ``fit`` (dense training) and
``prune`` (solve → hard prune → BatchNorm recalibration → masked retraining), with per-epoch
records, checkpoints and exact resume.

Every phase jits one step function (one compile per shape). Batches and per-step keys derive
from ``seed``, the phase and the epoch only, so a run resumed from its checkpoint replays exactly
the computation of an uninterrupted one: the results are bit-identical. Each epoch ends with a
checkpoint (params, model state, optimizer and solver state, masks, records; the RNG needs no
state, being a function of the seed, phase, epoch and step) in ``run_dir``. A non-finite loss
(or a solver's ``nonfinite`` flag) stops the run with an error naming the phase, epoch and step;
the checkpoint of the last good epoch stays on disk.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from prunax.constraints import Spec, leaves_with_paths

from . import _checkpoint as checkpoint
from ._fingerprint import describe, first_difference
from ._masking import LeafReport, finalize, keep_masked, prune_report, sign_rules
from ._placement import Placement


class NonFiniteLoss(FloatingPointError):
    """The loss or a solver state went NaN/inf; the message names where and the last checkpoint."""


@dataclass
class FitResult:
    params: object
    state: object
    records: list[dict]


@dataclass
class PruneResult:
    params: object
    state: object
    masks: object
    records: list[dict]
    report: list[LeafReport]


def _diagnostic(opt_state, name: str):
    """The first ``name`` field of a solver state inside an optimizer state, or None."""
    for node in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda x: hasattr(x, name)):
        if hasattr(node, name):
            return getattr(node, name)
    return None


def _prunable_sparsity(params, prunable: str) -> float:
    """Fraction of exact zeros over the leaves whose path matches ``prunable``."""
    zeros = total = 0
    paths, leaves, _ = leaves_with_paths(params)
    for path, leaf in zip(paths, leaves):
        if re.search(prunable, path):
            zeros += int(jnp.sum(leaf == 0))
            total += leaf.size
    return zeros / total if total else 0.0


def _step_function(problem, tx):
    def step(params, state, opt_state, batch, key):
        (value, (state, _)), grads = jax.value_and_grad(problem.loss, has_aux=True)(params, state, batch, key)
        updates, opt_state = tx.update(grads, opt_state, params, value=value)
        return optax.apply_updates(params, updates), state, opt_state, value

    return step


class _Run:
    """One run: its records, epochs, checkpoints and resume position."""

    def __init__(
        self,
        problem,
        seed: int,
        batch_size: int,
        run_dir,
        quiet: bool,
        fingerprint: dict,
        resume: bool,
        placement: Placement,
    ):
        self.problem, self.seed, self.batch_size, self.quiet = problem, seed, batch_size, quiet
        self.placement = placement
        if placement.mesh is not None:
            fingerprint = {**fingerprint, "mesh": placement.describe()}
        self.run_dir = Path(run_dir) if run_dir is not None else None
        fingerprint = json.loads(json.dumps(fingerprint, default=str))  # as it reads back from disk
        self.fingerprint = fingerprint
        self.records: list[dict] = []
        if not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ValueError(f"{fingerprint['kind']}: batch_size must be an int >= 1, got {batch_size!r}")
        self.steps = problem.steps_per_epoch(batch_size)
        if self.steps <= 0:
            raise ValueError(
                f"batch_size {batch_size} exceeds the {problem.train_size} training examples of "
                f"{problem.name}/{problem.size}"
            )
        placement.check_batch_size(batch_size)
        self.position = None  # (phase, epochs done) of the checkpoint resumed from
        if resume and self.run_dir is not None and checkpoint.exists(self.run_dir):
            meta = checkpoint.load_meta(self.run_dir)
            difference = first_difference(meta["fingerprint"], fingerprint)
            if difference is not None:
                raise ValueError(
                    f"resume: the checkpoint in {self.run_dir} was written by a different run "
                    f"({difference}); delete it or choose another run folder to start over"
                )
            self.records = meta["records"]
            self.position = (meta["phase"], meta["epoch"])

    def resumes_in(self, phase: str) -> bool:
        return self.position is not None and self.position[0] == phase

    def restore(self, template):
        return checkpoint.load(self.run_dir, template)

    def phase_key(self, phase: str):
        return jax.random.fold_in(jax.random.key(self.seed), PHASES.index(phase))

    def recalibrated(self, params, state, count: int):
        """``problem.recalibrate`` over the first ``count`` batches of the training epoch keyed
        by the seed and the "pruned+bn" phase (fewer if the epoch is shorter), recorded."""
        began = time.perf_counter()
        batches = self.problem.batches("train", self.phase_key("pruned+bn"), self.batch_size)
        state = self.problem.recalibrate(params, state, itertools.islice(batches, count))
        self.record("pruned+bn", 0, params, state, seconds=time.perf_counter() - began)
        return state

    def record(self, phase: str, epoch: int, params, state, opt_state=None, loss=None, seconds=0.0):
        residual = _diagnostic(opt_state, "residual_total") if opt_state is not None else None
        row = {
            "phase": phase,
            "epoch": epoch,
            "train_loss": loss,
            "metrics": {k: float(v) for k, v in self.problem.evaluate(params, state).items()},
            "sparsity": _prunable_sparsity(params, self.problem.prunable),
            "residual": None if residual is None else float(residual),
            "seconds": seconds,
        }
        self.records.append(row)
        if not self.quiet:
            shown = f"{self.problem.metric} {row['metrics'][self.problem.metric]:.4f}"
            tqdm.write(f"{phase} epoch {epoch}: {shown}, sparsity {row['sparsity']:.3f}")
        return row

    def _epoch(self, phase: str, epoch: int, carry, step):
        """One pass over the training batches; returns the carry and the mean loss."""
        params, state, opt_state = carry
        batch_key, step_key = jax.random.split(jax.random.fold_in(self.phase_key(phase), epoch))
        losses = []
        batches = self.problem.batches("train", batch_key, self.batch_size)
        bar = tqdm(batches, total=self.steps, desc=f"{phase} {epoch + 1}", disable=self.quiet, leave=False)
        for i, batch in enumerate(bar):
            params, state, opt_state, value = step(
                params, state, opt_state, self.placement.batch(batch), jax.random.fold_in(step_key, i)
            )
            losses.append(value)
        losses = np.asarray(jnp.stack(losses))
        bad = np.flatnonzero(~np.isfinite(losses))
        flagged = _diagnostic(opt_state, "nonfinite")
        if bad.size or (flagged is not None and bool(flagged)):
            where = f"step {int(bad[0])}" if bad.size else "a step (the solver flagged a non-finite value)"
            if self.run_dir is not None and checkpoint.exists(self.run_dir):
                meta = checkpoint.load_meta(self.run_dir)
                kept = (
                    f"the last good checkpoint ({meta['phase']} epoch {meta['epoch']}) is in {self.run_dir}"
                )
            else:
                kept = "no epoch finished with a checkpoint"
            raise NonFiniteLoss(
                f"{self.problem.name}: non-finite loss in {phase} epoch {epoch + 1}, {where}; {kept}"
            )
        return (params, state, opt_state), float(losses.mean())

    def train(self, phase: str, tx, epochs: int, params, state, opt_state, first_epoch: int, masks=None):
        """Epochs ``first_epoch..epochs-1`` of ``phase``; a record and a checkpoint after each."""
        step = self.placement.jit_step(_step_function(self.problem, tx), (params, state, opt_state))
        for epoch in range(first_epoch, epochs):
            began = time.perf_counter()
            (params, state, opt_state), loss = self._epoch(phase, epoch, (params, state, opt_state), step)
            self.record(phase, epoch + 1, params, state, opt_state, loss, time.perf_counter() - began)
            if self.run_dir is not None:
                tree = {"params": params, "state": state, "opt_state": opt_state, "masks": masks}
                meta = {
                    "fingerprint": self.fingerprint,
                    "records": self.records,
                    "phase": phase,
                    "epoch": epoch + 1,
                }
                checkpoint.save(self.run_dir, tree, meta)
        return params, state, opt_state


PHASES = ("dense", "solve", "retrain", "pruned+bn")  # the phases that draw batches; the index keys them


def fit(
    problem,
    tx=None,
    *,
    epochs=None,
    batch_size=None,
    seed: int = 0,
    start=None,
    run_dir=None,
    resume: bool = False,
    quiet: bool = False,
    mesh=None,
    param_sharding=None,
) -> FitResult:
    """Dense training of ``problem`` from ``start`` (or ``problem.init``) with ``tx`` (default: the
    problem's recipe). Records one row per epoch (``phase`` "dense").

    ``mesh``: a ``jax.sharding.Mesh`` with a ``"data"`` axis, or ``"local"`` for every local device
    on one: batches are sharded over that axis, parameters replicated or placed by
    ``param_sharding(path, leaf) -> PartitionSpec`` (docs/solvers.md, "Data-parallel runs")."""
    recipe = problem.recipe
    epochs = recipe.epochs if epochs is None else epochs
    batch_size = recipe.batch_size if batch_size is None else batch_size
    fingerprint = {
        "kind": "fit",
        "config": problem.config,
        "optimizer": recipe.description if tx is None else describe(tx),
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "start": None if start is None else describe(start),
    }
    placement = Placement(mesh, param_sharding, "fit")
    run = _Run(problem, seed, batch_size, run_dir, quiet, fingerprint, resume, placement)
    tx = optax.with_extra_args_support(recipe.optimizer(epochs * run.steps) if tx is None else tx)
    params, state = problem.init(jax.random.key(seed)) if start is None else start
    params, state = placement.params(params), placement.tree(state)
    opt_state, first = placement.tree(tx.init(params)), 0
    if run.resumes_in("dense"):
        tree = run.restore({"params": params, "state": state, "opt_state": opt_state, "masks": None})
        params, state, opt_state, first = tree["params"], tree["state"], tree["opt_state"], run.position[1]
    params, state, _ = run.train("dense", tx, epochs, params, state, opt_state, first)
    return FitResult(params, state, run.records)


def cache_dir() -> Path:
    """Where pretrained dense models are cached: ``$PRUNAX_CACHE`` or ``~/.cache/prunax``."""
    return Path(os.environ.get("PRUNAX_CACHE", Path.home() / ".cache" / "prunax"))


def pretrained(problem, seed: int = 0, quiet: bool = False):
    """``(params, state)`` of the problem's dense recipe, trained once and cached by configuration
    (problem config, recipe, seed and JAX version)."""
    key = json.dumps(
        {
            "config": problem.config,
            "recipe": problem.recipe.description,
            "seed": seed,
            "jax": jax.__version__,
            "checkpoint": checkpoint.FORMAT,
        },
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = cache_dir() / f"{problem.name}-{problem.size}-{digest}"
    template = problem.init(jax.random.key(seed))
    if checkpoint.exists(path):
        tree = checkpoint.load(path, {"params": template[0], "state": template[1]})
        return tree["params"], tree["state"]
    result = fit(problem, seed=seed, start=template, quiet=quiet)
    checkpoint.save(
        path, {"params": result.params, "state": result.state}, {"key": key, "records": result.records}
    )
    return result.params, result.state


def prune(
    problem,
    spec: Spec,
    tx,
    *,
    solve_epochs: int,
    retrain_epochs: int,
    batch_size=None,
    retrain_optimizer=None,
    start=None,
    seed: int = 0,
    run_dir=None,
    resume: bool = False,
    quiet: bool = False,
    recalibrate: bool = True,
    recalibration_batches: int = 20,
    mesh=None,
    param_sharding=None,
) -> PruneResult:
    """Solve with ``tx`` (a solver chained with an optimizer) for ``solve_epochs``, hard prune with
    ``finalize(spec, ...)``, then retrain with ``retrain_optimizer`` (default: the problem's recipe
    optimizer over the retraining steps) chained with ``keep_masked`` for ``retrain_epochs``.

    ``start``: (params, state) to begin from; None uses the cached dense ``pretrained`` model.
    ``recalibrate``: after the hard prune, replace the stale BatchNorm running statistics by
    ``problem.recalibrate`` over ``recalibration_batches`` training batches (per layer the mean
    over the batches of the batch mean and of the biased batch variance; forward passes only),
    so retraining starts from them; a no-op for a problem without ``recalibrate``.
    Records rows for the start ("dense", epoch 0), each solve epoch, the hard prune ("pruned",
    epoch 0: no retraining yet), the recalibrated hard prune ("pruned+bn", epoch 0, when it
    runs) and each retraining epoch. ``mesh``, ``param_sharding``: as in ``fit``; the solver's
    projections then run on the sharded parameters, and the masks are sharded like them.
    """
    if not isinstance(recalibration_batches, int) or recalibration_batches < 1:
        raise ValueError(f"prune: recalibration_batches must be an int >= 1, got {recalibration_batches!r}")
    batch_size = problem.recipe.batch_size if batch_size is None else batch_size
    fingerprint = {
        "kind": "prune",
        "config": problem.config,
        "spec": describe(spec),
        "solver": describe(tx),
        "retrain_optimizer": problem.recipe.description
        if retrain_optimizer is None
        else describe(retrain_optimizer),
        "start": "pretrained" if start is None else describe(start),
        "solve_epochs": solve_epochs,
        "retrain_epochs": retrain_epochs,
        "batch_size": batch_size,
        "seed": seed,
        "recalibrate": recalibrate,
        "recalibration_batches": recalibration_batches,
    }
    placement = Placement(mesh, param_sharding, "prune")
    run = _Run(problem, seed, batch_size, run_dir, quiet, fingerprint, resume, placement)
    params, state = pretrained(problem, seed, quiet) if start is None else start
    params, state = placement.params(params), placement.tree(state)
    dense = params
    solve_tx = optax.with_extra_args_support(tx)
    retrain = retrain_optimizer or problem.recipe.optimizer(max(retrain_epochs, 1) * run.steps)
    masks = spec.mask(params)  # structure for the checkpoint template; replaced at the hard prune

    keep_signs = (
        sign_rules(spec, params) if any(jax.tree_util.tree_leaves(sign_rules(spec, params))) else None
    )

    def retrain_tx(masks):
        return optax.with_extra_args_support(optax.chain(retrain, keep_masked(masks, keep_signs)))

    if run.position is None:
        run.record("dense", 0, params, state)
    if run.position is None or run.resumes_in("solve"):
        opt_state, first = placement.tree(solve_tx.init(params)), 0
        if run.resumes_in("solve"):
            tree = run.restore({"params": params, "state": state, "opt_state": opt_state, "masks": None})
            params, state, opt_state, first = (
                tree["params"],
                tree["state"],
                tree["opt_state"],
                run.position[1],
            )
        params, state, _ = run.train("solve", solve_tx, solve_epochs, params, state, opt_state, first)
        params, masks = placement.tree(finalize(spec, params))
        run.record("pruned", 0, params, state)
        if recalibrate and problem.recalibrate is not None:
            state = placement.tree(run.recalibrated(params, state, recalibration_batches))
        opt_state, first = placement.tree(retrain_tx(masks).init(params)), 0
    else:
        template = {
            "params": params,
            "state": state,
            "opt_state": placement.tree(retrain_tx(masks).init(params)),
            "masks": placement.tree(masks),
        }
        tree = run.restore(template)
        params, state, opt_state, masks = tree["params"], tree["state"], tree["opt_state"], tree["masks"]
        first = run.position[1]
    params, state, _ = run.train(
        "retrain", retrain_tx(masks), retrain_epochs, params, state, opt_state, first, masks
    )
    return PruneResult(params, state, masks, run.records, prune_report(spec, dense, params))
