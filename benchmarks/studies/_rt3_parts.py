"""RT3 run-time reconfigurability (DAC 2021; docs/benchmarks.md, "RT3"): one set of block-pruned
weights, several pattern-mask sets of different sparsity, a policy-gradient controller that picks
one set per frequency level, and switching a level as a pure function that swaps masks.

The controller is REINFORCE over a categorical policy per level: each step samples a batch of
candidates per level, scores each reward = accuracy − penalty · max(0, cost − budget of the level),
and moves the level's logits by lr · mean_b A_b ∇ log π(i_b), with the advantages A standardised
within the batch (the batch mean is the baseline). Standardising keeps accuracy gaps of a point
visible next to penalties of whole units, and a policy that samples one candidate only stops
moving. (A running baseline with a running spread locked onto a second-best candidate on one level
in eight on the study's rewards; the batch form found every level's best in 20 of 20 seeds.) The
candidates' accuracies are measured once and cached (a candidate is data: masks on the shared
weights), so the search costs evaluations of distinct candidates only.

Level-aware training (``switchable``) fits the shared weights to every mask set at once by drawing
one set per step, in the spirit of slimmable networks: without it, sets that drop half of each
surviving tile leave MiniLM near chance (see ``rt3_study``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from prunax.constraints import apply_masks


@dataclasses.dataclass(frozen=True)
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
    steps: int = 200,
    batch: int = 8,
    lr: float = 0.5,
    penalty: float = 10.0,
    seed: int = 0,
) -> Choice:
    """Pick one of ``len(costs)`` candidates for each level of ``budgets`` by REINFORCE.

    ``accuracy(i)`` is called at most once per candidate (cached)."""
    if not costs or not budgets or steps < 1 or batch < 2:
        raise ValueError(
            f"need candidates, levels, steps >= 1 and batch >= 2, got {len(costs)}, {len(budgets)}, "
            f"{steps}, {batch}"
        )
    cache: dict[int, float] = {}

    def score(i: int) -> float:
        if i not in cache:
            cache[i] = float(accuracy(i))
        return cache[i]

    rng = np.random.default_rng(seed)
    logits = np.zeros((len(budgets), len(costs)))
    history = np.zeros((steps, len(budgets)))
    for step in range(steps):
        probs = softmax(logits)
        for level, budget in enumerate(budgets):
            picks = rng.choice(len(costs), size=batch, p=probs[level])
            rewards = np.array([reward(score(i), costs[i], budget, penalty) for i in picks])
            advantages = (rewards - rewards.mean()) / (rewards.std() + 1e-12)
            # Σ_b A_b (e_{i_b} − π) = Σ_b A_b e_{i_b}, since the standardised A sum to 0
            logits[level] += lr * np.bincount(picks, advantages, len(costs)) / batch
            history[step, level] = rewards.mean()
    probs = softmax(logits)
    return Choice(tuple(int(i) for i in probs.argmax(1)), probs, history)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def switchable(problem, mask_sets: Sequence, name: str):
    """``problem`` whose loss trains the shared weights under one of ``mask_sets`` drawn
    uniformly per step (level-aware training: each level sees its own sparse network, and a
    weight's expected gradient sums over the levels that keep it). ``name`` identifies the mask
    sets in the config (checkpoint fingerprints); ``evaluate`` is the original one."""
    if not mask_sets:
        raise ValueError("switchable: need at least one mask set")
    stacked = jax.tree_util.tree_map(
        lambda *m: jnp.stack(m), *mask_sets
    )  # closed over: jit passes it in, no HLO constant

    def loss(params, state, batch, key):
        pick, key = jax.random.split(key)
        i = jax.random.randint(pick, (), 0, len(mask_sets))
        masks = jax.tree_util.tree_map(lambda m: m[i], stacked)
        return problem.loss(apply_masks(params, masks), state, batch, key)

    return dataclasses.replace(problem, config={**problem.config, "switchable": name}, loss=loss)


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
