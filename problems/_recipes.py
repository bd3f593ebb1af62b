"""Adam recipes for dense training, shared by problems and the default of ``classifier``."""

from __future__ import annotations

import numpy as np
import optax

from ._protocol import Recipe

SCHEDULES = ("constant", "cosine", "warmup-cosine")


def adam_recipe(
    learning_rate: float = 1e-3,
    epochs: int = 5,
    batch_size: int = 64,
    *,
    schedule: str = "constant",
    clip: float | None = None,
) -> Recipe:
    """Adam at ``learning_rate``: constant, cosine-decayed to 0 over the run ("cosine"), or warmed
    up linearly from 1e-4 over the first 5 % of the steps then cosine-decayed ("warmup-cosine");
    ``clip``: global-norm gradient clipping first. The description (a cache key) reads e.g.
    "adam(warmup-cosine 5e-3, clip 10) x 12 epochs, bs 32"."""
    if schedule not in SCHEDULES:
        raise ValueError(f"adam_recipe: schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not learning_rate > 0:
        raise ValueError(f"adam_recipe: learning_rate must be positive, got {learning_rate!r}")

    def optimizer(total_steps: int):
        if schedule == "cosine":
            rate = optax.cosine_decay_schedule(learning_rate, max(total_steps, 1))
        elif schedule == "warmup-cosine":
            warmup = max(total_steps // 20, 1)
            rate = optax.warmup_cosine_decay_schedule(1e-4, learning_rate, warmup, max(total_steps, 2))
        else:
            rate = learning_rate
        adam = optax.adam(rate)
        return adam if clip is None else optax.chain(optax.clip_by_global_norm(clip), adam)

    rate = np.format_float_scientific(learning_rate, trim="-", exp_digits=1)  # 5e-3, as written
    settings = rate if schedule == "constant" else f"{schedule} {rate}"
    settings += "" if clip is None else f", clip {clip:g}"
    return Recipe(epochs, batch_size, optimizer, f"adam({settings}) x {epochs} epochs, bs {batch_size}")
