"""RT3 run-time reconfigurability (DAC 2021; REFERENCE §1.5, §3.2): one set of block-pruned
weights, several pattern-mask sets of different sparsity, a policy-gradient controller that picks
one set per frequency level, and switching a level as a pure function that swaps masks.

The controller is REINFORCE over a categorical policy per level: each step samples a candidate per
level, scores reward = accuracy − penalty · max(0, cost − budget of the level), and moves the
level's logits by lr · A · ∇ log π, with the advantage A = (reward − baseline)/σ normalised by
running estimates of the level's reward mean and spread (accuracy gaps of a point or two would
otherwise be lost in the sampling noise). The
candidates' accuracies are measured once and cached (a candidate is data: masks on the shared
weights), so the search costs evaluations of distinct candidates only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from prunax.constraints.spec import apply_masks


@dataclass(frozen=True)
class Choice:
    picks: tuple[int, ...]  # the candidate chosen per level (the policy's mode)
    probabilities: np.ndarray  # (levels, candidates) final policy
    rewards: np.ndarray  # (steps, levels) sampled rewards


def reward(accuracy: float, cost: float, budget: float, penalty: float) -> float:
    """accuracy − penalty · max(0, cost − budget)."""
    return accuracy - penalty * max(0.0, cost - budget)


def reinforce(
    accuracy: Callable[[int], float],
    costs: Sequence[float],
    budgets: Sequence[float],
    steps: int = 1000,
    lr: float = 0.05,
    penalty: float = 10.0,
    seed: int = 0,
) -> Choice:
    """Pick one of ``len(costs)`` candidates for each level of ``budgets`` by REINFORCE.

    ``accuracy(i)`` is called at most once per candidate (cached)."""
    if not costs or not budgets or steps < 1:
        raise ValueError(f"need candidates, levels and steps >= 1, got {len(costs)}, {len(budgets)}, {steps}")
    cache: dict[int, float] = {}

    def score(i: int) -> float:
        if i not in cache:
            cache[i] = float(accuracy(i))
        return cache[i]

    rng = np.random.default_rng(seed)
    logits = np.zeros((len(budgets), len(costs)))
    baseline = np.zeros(len(budgets))
    spread = np.ones(len(budgets))  # running mean square deviation: advantages in units of it
    history = np.zeros((steps, len(budgets)))
    for step in range(steps):
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        for level, budget in enumerate(budgets):
            i = int(rng.choice(len(costs), p=probs[level]))
            r = reward(score(i), costs[i], budget, penalty)
            grad = -probs[level]
            grad[i] += 1.0  # ∇ log π(i) for a softmax policy
            advantage = (r - baseline[level]) / np.sqrt(spread[level] + 1e-6) if step else 0.0
            logits[level] += lr * advantage * grad
            spread[level] = 0.9 * spread[level] + 0.1 * (r - baseline[level]) ** 2 if step else 0.01
            baseline[level] = r if step == 0 else 0.9 * baseline[level] + 0.1 * r
            history[step, level] = r
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return Choice(tuple(int(i) for i in probs.argmax(1)), probs, history)


_switch = jax.jit(apply_masks)


def switch(params, masks):
    """The weights of a level: the shared (block-pruned) weights under that level's mask set."""
    return _switch(params, masks)


def switch_milliseconds(params, mask_sets: Sequence, repeats: int = 20) -> float:
    """Median time of switching to each mask set in turn (compiled once: same shapes), in ms."""
    jax.block_until_ready(switch(params, mask_sets[0]))
    times = []
    for r in range(repeats):
        masks = mask_sets[r % len(mask_sets)]
        began = time.perf_counter()
        jax.block_until_ready(switch(params, masks))
        times.append(time.perf_counter() - began)
    return 1e3 * float(np.median(times))


def kept_fraction(masks) -> float:
    """Kept entries over all masked leaves: the cost proxy of a mask set (nonzeros to compute)."""
    leaves = jax.tree_util.tree_leaves(masks)
    return float(sum(jnp.sum(m) for m in leaves) / sum(m.size for m in leaves))
