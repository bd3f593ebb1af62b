"""What the solvers share: the leaves a spec constrains, state pytrees over them, argument checks.

Solver state mirrors ``params``: constrained leaves hold arrays, the others ``optax.MaskedNode()``
(an empty pytree node), so the state tree has a fixed structure and holds no dead copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prunax.constraints import Spec


def _is_masked(x) -> bool:
    return isinstance(x, optax.MaskedNode)


@dataclass(frozen=True)
class Layout:
    """Which leaves of ``params`` a spec constrains (trace-time Python, rebuilt from shapes)."""

    paths: tuple[str, ...]
    constrained: tuple[bool, ...]
    treedef: object
    solver: str

    @classmethod
    def of(cls, spec: Spec, params, solver: str) -> Layout:
        """Raises ValueError (naming ``solver``) for a spec rule claiming no leaf, or no constraint."""
        paths, _, _, treedef = spec.assign(params)
        constrained = tuple(c is not None for c in constraint_list(spec, params))
        if not any(constrained):
            raise ValueError(
                f"{solver}: the spec constrains no leaf of the params (paths: {list(paths)[:8]}...)"
            )
        return cls(tuple(paths), constrained, treedef, solver)

    def pick(self, tree) -> list:
        """The constrained leaves of a params-shaped or state tree, in order."""
        leaves = jax.tree_util.tree_leaves(tree, is_leaf=_is_masked)
        if len(leaves) != len(self.constrained):
            raise ValueError(
                f"{self.solver}: a tree with {len(leaves)} leaves does not match the params' "
                f"{len(self.paths)} leaves ({', '.join(self.paths[:4])}, ...); "
                "was the state initialised for other params?"
            )
        return [x for x, c in zip(leaves, self.constrained) if c]

    def build(self, values: list):
        """A state tree: ``values`` on the constrained leaves, ``MaskedNode()`` elsewhere."""
        it = iter(values)
        return self.treedef.unflatten([next(it) if c else optax.MaskedNode() for c in self.constrained])

    def replace(self, tree, values: list):
        """``tree`` (params-shaped) with its constrained leaves replaced by ``values``."""
        it = iter(values)
        leaves = jax.tree_util.tree_leaves(tree)
        return self.treedef.unflatten([next(it) if c else x for x, c in zip(leaves, self.constrained)])


def constraint_list(spec: Spec, params) -> list:
    """The constraint (or None) of every leaf of ``params``, in leaf order."""
    return jax.tree_util.tree_leaves(spec.constraints(params), is_leaf=lambda c: c is None)


def all_finite(arrays) -> jax.Array:
    """True iff no array holds NaN or inf: ``sum(x * 0)`` is NaN exactly then (one read pass)."""
    total = jnp.float32(0)
    for x in arrays:
        total = total + jnp.sum(jnp.asarray(x, jnp.float32) * 0)
    return jnp.isfinite(total)


def inputs_finite(grads_or_updates: list, extra_args: dict) -> jax.Array:
    """Finite gradients (or updates) and, when passed, a finite ``value`` (the loss)."""
    ok = all_finite(grads_or_updates)
    if extra_args.get("value") is not None:
        ok = ok & jnp.isfinite(jnp.asarray(extra_args["value"], jnp.float32))
    return ok


def square_norm(x) -> jax.Array:
    return jnp.sum(jnp.square(x.astype(jnp.float32)))


def relative(num_sq, den_sq) -> jax.Array:
    """sqrt(num / den), 0 where the denominator is 0."""
    return jnp.where(den_sq > 0, jnp.sqrt(num_sq / jnp.where(den_sq > 0, den_sq, 1.0)), 0.0)


def hyper(value, count) -> jax.Array:
    """A hyperparameter that is a number or an optax schedule of the step count, as float32."""
    return jnp.asarray(value(count) if callable(value) else value, jnp.float32)


def _concrete(value):
    """The Python float of a number or concrete array; None for a schedule or a tracer."""
    if callable(value) or isinstance(value, jax.core.Tracer):
        return None
    return float(np.asarray(value))


def check_range(solver: str, name: str, value, low=None, high=None, low_open=True, high_open=True):
    """ValueError naming ``solver`` and ``name`` unless ``value`` lies in the interval (bounds
    ``None`` are unbounded). Schedules and traced values (inside ``inject_hyperparams``) pass."""
    x = _concrete(value)
    if x is None:
        return
    ok = np.isfinite(x)
    if low is not None:
        ok &= x > low if low_open else x >= low
    if high is not None:
        ok &= x < high if high_open else x <= high
    if not ok:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        interval = f"{'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}"
        raise ValueError(f"{solver}: {name} must be in {interval}, got {value!r}")


def check_every(solver: str, name: str, value) -> None:
    """A period in steps: a positive int."""
    if isinstance(value, jax.core.Tracer):
        return
    if isinstance(value, jax.Array) and value.ndim == 0 and jnp.issubdtype(value.dtype, jnp.integer):
        value = int(value)  # a concrete hyperparameter from optax.inject_hyperparams
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0):
        raise ValueError(f"{solver}: {name} must be a positive int (steps), got {value!r}")


def require_params(solver: str, params) -> None:
    if params is None:
        raise ValueError(f"{solver}: update needs params (call tx.update(grads, state, params))")


def due(count, every) -> jax.Array:
    """Periodic work runs at the start of steps every, 2*every, ... (after `every` W-steps)."""
    return (count > 0) & (count % every == 0)
