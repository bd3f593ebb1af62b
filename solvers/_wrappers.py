"""Problem → Problem wrappers that change what the loss trains: sparse progressive distillation
(``progressive_distillation``) and level-aware training over several mask sets (``switchable``).

Sparse progressive distillation (SPD, Huang et al. ACL 2022, arXiv 2110.08190; docs/benchmarks.md,
"Sparse progressive distillation"). The teacher is the dense model (frozen); the student is the
copy being pruned. In training each swappable layer ℓ is drawn from the student with probability p
(the replacing rate), else from the teacher (BERT-of-Theseus module replacing: b_ℓ ~ Bernoulli(p));
evaluation uses the student alone. The loss, with the teacher's outputs held constant and no hard-label term:

    Σ_{l=0..L} MSE(h_l^S, h_l^T) + Σ_{l=1..L} MSE(A_l^S, A_l^T) + CE_soft(z^S/T, z^T/T)

h_0 the embeddings, h_l layer outputs, A_l attention probabilities, z the logits; the MSEs are
means over real tokens (query and key positions for A), CE_soft the mean over all elements of
−softmax(z^T/T)·log_softmax(z^S/T), as the reference code. The replacing rate is a function of
the training step, counted in the wrapped problem's state, so one wrapped problem serves all
three SPD stages inside ``prune``: pruning at p0 (solve phase), progressive replacing with p
rising linearly to 1 and fine-tuning at p = 1 (retraining phase, whose optimizer restarts the
learning rate at its peak). ``replacing=1`` is plain layer-wise knowledge distillation.

Level-aware training (RT3, DAC 2021; docs/benchmarks.md, "RT3") fits one set of shared weights to
several mask sets at once by drawing one set per step, in the spirit of slimmable networks: without
it, RT3's pattern sets that drop half of each surviving tile leave MiniLM near chance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from prunax.constraints import apply_masks


@dataclasses.dataclass(frozen=True)
class ReplacingRate:
    """SPD's schedule of the step t: p0 while pruning (t < prune_steps), then rising linearly to
    1 over ``replace_steps`` steps, then 1. (A dataclass, so its repr names the run.)"""

    p0: float
    prune_steps: int
    replace_steps: int

    def __post_init__(self):
        if not 0.0 < self.p0 <= 1.0:
            raise ValueError(f"ReplacingRate: p0 must lie in (0, 1], got {self.p0}")
        if self.prune_steps < 0 or self.replace_steps < 1:
            raise ValueError(
                "ReplacingRate: need prune_steps >= 0 and replace_steps >= 1, "
                f"got {self.prune_steps}, {self.replace_steps}"
            )

    def __call__(self, step):
        progress = (jnp.asarray(step, jnp.float32) - self.prune_steps) / self.replace_steps
        return self.p0 + (1.0 - self.p0) * jnp.clip(progress, 0.0, 1.0)


def _masked_mse(a, b, weights):
    """Mean of (a − b)² over the entries where ``weights`` (broadcast to a's shape) is 1."""
    weights = jnp.broadcast_to(weights, a.shape).astype(a.dtype)
    return jnp.sum(jnp.square(a - b) * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def distillation_loss(student: dict, teacher: dict, temperature: float = 1.0):
    """SPD's loss between two ``Problem.features`` outputs; returns (value, parts)."""
    mask = student["mask"].astype(jnp.float32)
    hidden = sum(_masked_mse(s, t, mask[..., None]) for s, t in zip(student["hidden"], teacher["hidden"]))
    pairs = mask[:, None, :, None] * mask[:, None, None, :]
    attention = sum(_masked_mse(s, t, pairs) for s, t in zip(student["attentions"], teacher["attentions"]))
    soft = jax.nn.softmax(teacher["logits"] / temperature, axis=-1)
    logits = jnp.mean(-soft * jax.nn.log_softmax(student["logits"] / temperature, axis=-1))
    parts = {"hidden_mse": hidden, "attention_mse": attention, "soft_ce": logits}
    return hidden + attention + logits, parts


def progressive_distillation(problem, teacher, replacing=1.0, temperature: float = 1.0):
    """``problem`` with SPD's loss against the frozen ``teacher`` params. ``replacing`` is p: a
    number in (0, 1] or a ``ReplacingRate`` of the training step. The wrapped state is
    ``{"model": problem state, "step": int32, "teacher": params}`` (the teacher travels in the
    state rather than as a closure constant, so the jitted step takes it as an argument; the
    problem's own state passes through unchanged: running statistics are not updated while
    distilling; ``recalibrate``, where the problem has it, recalibrates them for the student).
    ``evaluate`` scores the student with the problem's own metric. Start ``prune``/``fit`` from
    ``(params, wrap_state(state, teacher))``."""
    if problem.features is None or not problem.layers:
        raise ValueError(
            f"progressive_distillation: {problem.name} does not expose features and layers "
            "(Problem.features, Problem.layers); only such problems can be distilled layer-wise"
        )
    missing = [name for name in problem.layers if name not in teacher]
    if missing:
        raise ValueError(f"progressive_distillation: teacher params lack the layers {missing}")
    if temperature <= 0:
        raise ValueError(f"progressive_distillation: temperature must be positive, got {temperature}")
    if callable(replacing) and not isinstance(replacing, ReplacingRate):
        raise ValueError("progressive_distillation: replacing must be a number or a ReplacingRate")
    if not callable(replacing) and not 0.0 < replacing <= 1.0:
        raise ValueError(f"progressive_distillation: replacing rate must lie in (0, 1], got {replacing}")
    rate = replacing if callable(replacing) else (lambda step: jnp.float32(replacing))

    def init(key):
        params, state = problem.init(key)
        return params, wrap_state(state, teacher)

    def loss(params, state, batch, key):
        p = rate(state["step"])
        chosen = jax.random.bernoulli(key, p, (len(problem.layers),))
        frozen = jax.lax.stop_gradient(state["teacher"])
        mixed = dict(params)
        for use_student, name in zip(chosen, problem.layers):
            mixed[name] = jax.tree_util.tree_map(
                lambda s, t, use=use_student: jnp.where(use, s, t), params[name], frozen[name]
            )
        student_out = problem.features(mixed, state["model"], batch)
        teacher_out = jax.lax.stop_gradient(problem.features(frozen, state["model"], batch))
        value, parts = distillation_loss(student_out, teacher_out, temperature)
        logs = {**parts, "replacing": p, "student_layers": jnp.sum(chosen)}
        return value, ({**state, "step": state["step"] + 1}, logs)

    def evaluate(params, state, *args, **kwargs):
        return problem.evaluate(params, state["model"], *args, **kwargs)

    def recalibrate(params, state, batches):
        return {**state, "model": problem.recalibrate(params, state["model"], batches)}

    config = {
        **problem.config,
        "distillation": {"replacing": repr(replacing), "temperature": temperature},
    }
    return dataclasses.replace(
        problem,
        config=config,
        init=init,
        loss=loss,
        evaluate=evaluate,
        recalibrate=None if problem.recalibrate is None else recalibrate,
    )


def wrap_state(state, teacher) -> dict:
    """The wrapped problem's state at step 0 for a problem state and teacher params."""
    return {"model": state, "step": jnp.int32(0), "teacher": teacher}


def switchable(problem, mask_sets: Sequence, name: str):
    """``problem`` whose loss trains the shared weights under one of ``mask_sets`` drawn
    uniformly per step (level-aware training: each level sees its own sparse network, and a
    weight's expected gradient sums over the levels that keep it). ``name`` identifies the mask
    sets in the config (checkpoint fingerprints); ``evaluate`` is the original one."""
    if not mask_sets:
        raise ValueError("switchable: need at least one mask set")
    # closed over: jit passes it in, no HLO constant
    stacked = jax.tree_util.tree_map(lambda *m: jnp.stack(m), *mask_sets)

    def loss(params, state, batch, key):
        pick, key = jax.random.split(key)
        i = jax.random.randint(pick, (), 0, len(mask_sets))
        masks = jax.tree_util.tree_map(lambda m: m[i], stacked)
        return problem.loss(apply_masks(params, masks), state, batch, key)

    return dataclasses.replace(problem, config={**problem.config, "switchable": name}, loss=loss)
