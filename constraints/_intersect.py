"""Intersections of constraints by composition (docs/constraints.md, "The one idea")."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from ._base import Constraint


@dataclass(frozen=True)
class Intersect(Constraint):
    """A ∩ B ∩ ...: mask by the first part, then each next part on the already-masked array.

    Every set here is downward closed (zeroing entries of a member keeps it a member), so the
    result lies in every part: the composition is always feasible. It is *not* in general the
    Euclidean projection onto the intersection (column [5, -4, -4, -4] under polarity ∩ top-1:
    sign first gives squared distance 57, the true projection 48), so ``exact`` is False.
    ``groups`` are those of the first part that has any (the structure a penalty should target).
    """

    parts: tuple[Constraint, ...]

    exact = False

    def __post_init__(self):
        if len(self.parts) < 2 or not all(isinstance(p, Constraint) for p in self.parts):
            raise ValueError(f"Intersect needs two or more constraints, got {self.parts!r}")

    @classmethod
    def of(cls, *parts: Constraint) -> Intersect:
        flat: list[Constraint] = []
        for part in parts:
            flat.extend(part.parts if isinstance(part, Intersect) else (part,))
        return cls(tuple(flat))

    @property
    def fixes_signs(self) -> bool:
        return any(p.fixes_signs for p in self.parts)

    def __repr__(self):
        return " & ".join(repr(p) for p in self.parts)

    def check(self, shape, dtype, path="<array>"):
        for part in self.parts:
            part.check(shape, dtype, path)

    def _mask(self, w, scale=None):
        mask = jnp.ones(w.shape, bool)
        zero = jnp.zeros((), w.dtype)
        for part in self.parts:
            mask = mask & part._mask(jnp.where(mask, w, zero), scale)
        return mask

    def _is_feasible(self, w):
        ok = jnp.asarray(True)
        for part in self.parts:
            ok = ok & part._is_feasible(w)
        return ok

    def groups(self, shape):
        for part in self.parts:
            found = part.groups(shape)
            if found is not None:
                return found
        return None
