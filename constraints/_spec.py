"""Specs: constraints assigned to the leaves of a parameter pytree by regex rules
(docs/constraints.md, "Specs and global budgets").

```python
spec = constraints.spec([
    (r"conv\\d+/kernel$", constraints.Pattern(patterns, axes=(0, 1)) & constraints.ColumnSign(8, axis=2)),
    constraints.global_(constraints.Unstructured(0.9), include=r"dense\\d*/kernel$"),
    (r"(bias|scale)$", None),                  # explicitly unconstrained
])
spec.project(params); spec.mask(params); spec.is_feasible(params); print(spec.describe(params))
```

Paths are slash-joined keys (``"block1/conv2/kernel"``), matched with ``re.search``; the first
matching rule wins; leaves no rule matches are unconstrained. A rule that claims no leaf is an
error that lists nearby paths. A ``global_`` budget ranks all its leaves together (one threshold
across layers), optionally normalising each leaf's scores first. A ``coupled`` rule keeps or
removes channels that span slices of several named leaves (a filter, its BatchNorm and the next
layer's input slice) together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ._base import Constraint
from ._coupled import Coupled
from ._global_budget import GlobalBudget
from ._paths import leaves_with_paths, nearby


@dataclass(frozen=True)
class Spec:
    """Rules assigning constraints to pytree leaves; build with ``constraints.spec([...])``."""

    rules: tuple

    def __post_init__(self):
        rules = []
        for i, rule in enumerate(self.rules):
            if isinstance(rule, GlobalBudget | Coupled):
                rules.append(rule)
                continue
            if not (isinstance(rule, tuple) and len(rule) == 2 and isinstance(rule[0], str)):
                raise ValueError(
                    f"spec rule {i}: expected (regex, constraint or None), global_(...) or coupled(...), "
                    f"got {rule!r}"
                )
            pattern, constraint = rule
            if constraint is not None and not isinstance(constraint, Constraint):
                raise ValueError(f"spec rule {i} ({pattern!r}): {constraint!r} is not a constraint")
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"spec rule {i}: {pattern!r} is not a valid regex ({err})") from None
            rules.append((pattern, constraint))
        object.__setattr__(self, "rules", tuple(rules))

    # -- assignment ---------------------------------------------------------------------------
    def _pattern(self, rule) -> str:
        return rule.include if isinstance(rule, GlobalBudget | Coupled) else rule[0]

    def assign(self, params) -> tuple[list[str], list, list, object]:
        """(paths, leaves, rule index or None per leaf, treedef), after checking every rule and leaf."""
        paths, leaves, treedef = leaves_with_paths(params)
        owner: list[int | None] = []
        for path in paths:
            owner.append(
                next((i for i, r in enumerate(self.rules) if re.search(self._pattern(r), path)), None)
            )
        for i, rule in enumerate(self.rules):
            if isinstance(rule, Coupled):
                self._check_coupled(i, rule, paths, leaves, owner)
        for i, rule in enumerate(self.rules):
            if i in owner:
                continue
            pattern = self._pattern(rule)
            matched = [p for p in paths if re.search(pattern, p)]
            why = "every path it matches is taken by an earlier rule" if matched else "it matches no leaf"
            raise ValueError(
                f"spec rule {i} ({pattern!r}) claims no leaf: {why}; nearby paths: {nearby(pattern, paths)}"
            )
        for path, leaf, i in zip(paths, leaves, owner):
            constraint = self._constraint(i, path, np.shape(leaf))
            if constraint is not None and not isinstance(self.rules[i], Coupled):
                constraint.check(np.shape(leaf), jnp.result_type(leaf), path)
        return paths, leaves, owner, treedef

    def _check_coupled(self, i: int, rule: Coupled, paths, leaves, owner) -> None:
        """Every member path is a leaf this rule owns; then the rule's own shape checks."""
        at = {p: j for j, p in enumerate(paths)}
        for path in rule.paths:
            group = rule.couplings[rule.group_of(path)][0]
            if path not in at:
                raise ValueError(
                    f"spec rule {i} (coupled group {group!r}): member {path!r} is not a leaf of the "
                    f"params; nearby paths: {nearby(path, paths)}"
                )
            if owner[at[path]] != i:
                raise ValueError(
                    f"spec rule {i} (coupled group {group!r}): member {path!r} is taken by the earlier "
                    f"rule {owner[at[path]]} ({self._pattern(self.rules[owner[at[path]]])!r})"
                )
        rule.check({p: leaves[at[p]] for p in rule.paths})

    def _constraint(self, rule_index, path: str, shape) -> Constraint | None:
        if rule_index is None:
            return None
        rule = self.rules[rule_index]
        if isinstance(rule, Coupled):
            return rule.member(path, shape)
        return rule.constraint if isinstance(rule, GlobalBudget) else rule[1]

    def constraints(self, params):
        """Pytree mirroring ``params``: the constraint of each leaf (a global budget's inner one; for
        a coupled member, ``Block((1,), s, axes=(axis,))``: its slices at the rule's sparsity), or None."""
        paths, leaves, owner, treedef = self.assign(params)
        return jax.tree_util.tree_unflatten(
            treedef, [self._constraint(i, p, np.shape(w)) for p, w, i in zip(paths, leaves, owner)]
        )

    # -- the algebra over the tree ------------------------------------------------------------
    def mask(self, params, scale=None):
        """Pytree of bool masks mirroring ``params``; unconstrained leaves are all True. ``scale``
        in [0, 1] (may be traced) prunes that fraction of every sparsity (see ``Constraint.mask``)."""
        paths, leaves, owner, treedef = self.assign(params)
        masks: list = [None] * len(leaves)
        for i, rule in enumerate(self.rules):
            mine = [j for j, o in enumerate(owner) if o == i]
            if isinstance(rule, GlobalBudget):
                for j, m in zip(mine, rule.masks([jnp.asarray(leaves[j]) for j in mine], scale)):
                    masks[j] = m
            elif isinstance(rule, Coupled):
                found = rule.masks({paths[j]: leaves[j] for j in mine}, scale)
                for j in mine:
                    masks[j] = found[paths[j]]
            elif rule[1] is not None:
                for j in mine:
                    masks[j] = rule[1].mask(leaves[j], paths[j], scale)
        masks = [jnp.ones(np.shape(leaf), bool) if m is None else m for m, leaf in zip(masks, leaves)]
        return jax.tree_util.tree_unflatten(treedef, masks)

    def project(self, params):
        """Every constrained leaf masked onto its set; unconstrained leaves unchanged."""
        return apply_masks(params, self.mask(params))

    def feasibility(self, params) -> dict[str, jax.Array]:
        """Per rule (keyed by its regex): whether its leaves lie in its set (bool scalars)."""
        paths, leaves, owner, _ = self.assign(params)
        out = {}
        for i, rule in enumerate(self.rules):
            mine = [j for j, o in enumerate(owner) if o == i]
            if isinstance(rule, GlobalBudget):
                out[rule.include] = rule.is_feasible([jnp.asarray(leaves[j]) for j in mine])
            elif isinstance(rule, Coupled):
                out[rule.include] = rule.is_feasible({paths[j]: leaves[j] for j in mine})
            elif rule[1] is not None:
                ok = jnp.asarray(True)
                for j in mine:
                    ok = ok & rule[1].is_feasible(leaves[j], paths[j])
                out[rule[0]] = ok
        return out

    def is_feasible(self, params) -> jax.Array:
        ok = jnp.asarray(True)
        for value in self.feasibility(params).values():
            ok = ok & value
        return ok

    def groups(self, params):
        """Pytree mirroring ``params``: each leaf's ``Groups`` (from its constraint) or None."""
        paths, leaves, owner, treedef = self.assign(params)
        out = []
        for path, leaf, i in zip(paths, leaves, owner):
            constraint = self._constraint(i, path, np.shape(leaf))
            out.append(None if constraint is None else constraint.groups(np.shape(leaf)))
        return jax.tree_util.tree_unflatten(treedef, out)

    def describe(self, params) -> str:
        """A Markdown table: path, shape, dtype, constraint, kept fraction of the projection."""
        paths, leaves, owner, _ = self.assign(params)
        masks = jax.tree_util.tree_leaves(self.mask(params))
        rows = [("path", "shape", "dtype", "constraint", "kept")]
        for path, leaf, i, m in zip(paths, leaves, owner, masks):
            rule = None if i is None else self.rules[i]
            if rule is None or (not isinstance(rule, GlobalBudget | Coupled) and rule[1] is None):
                what = "unconstrained"
            elif isinstance(rule, GlobalBudget):
                what = f"global {rule.constraint!r}" + (
                    f" normalize={rule.normalize}" if rule.normalize else ""
                )
            elif isinstance(rule, Coupled):
                group = rule.couplings[rule.group_of(path)][0]
                what = f"{rule.describe()} group {group} axis {rule.axis_of(path)}"
            else:
                what = repr(rule[1])
            size = int(np.size(leaf))
            kept = f"{int(jnp.sum(m)) / size:.4f}" if size else "-"
            rows.append((path, str(tuple(np.shape(leaf))), jnp.result_type(leaf).name, what, kept))
        widths = [max(len(r[c]) for r in rows) for c in range(5)]
        lines = ["| " + " | ".join(r[c].ljust(widths[c]) for c in range(5)) + " |" for r in rows]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)


def apply_masks(params, masks):
    """``where(mask, w, 0)`` leaf by leaf: the projection once the masks are known."""
    return jax.tree_util.tree_map(
        lambda w, m: jnp.where(m, w, jnp.zeros((), jnp.result_type(w))), params, masks
    )


def spec(rules) -> Spec:
    """Build a ``Spec`` from a list of ``(regex, constraint or None)`` rules, ``global_`` budgets and
    ``coupled`` rules."""
    return Spec(tuple(rules))
