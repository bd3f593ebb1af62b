"""How the model pass sees a layer's inputs (docs/oneshot.md, "Pruning a model"): Flax method
interceptors on ``nn.Dense`` and ``nn.Conv`` (a conv's rows are its im2col patches), in two ways.

* The whole loss: one jitted (params, state, batch) -> {kernel path: (XᵀX, rows)} over every
  wanted layer. It works for any model, but calibrating block i runs blocks 0..i again.
* A chain of blocks: most networks call their blocks in a chain — block i+1 takes block i's
  output (or its first element) as its first argument and otherwise the very same arguments
  (positions, a mask, a train flag). ``probe`` traces the loss once and checks exactly that;
  then only the first block's inputs come from the loss, and each block runs alone (its own Flax
  module, unbound, on its own variables) on stored inputs: two block forwards per block instead
  of a growing prefix.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.linear import canonicalize_padding

from ._calibration import Gram, conv_patches


def _kernel_path(context) -> str | None:
    """The kernel path of the Dense or Conv layer a method call of ``context`` applies, if it is one."""
    module = context.module
    if isinstance(module, (nn.Dense, nn.Conv)) and context.method_name == "__call__":
        if module.scope is not None:
            return "/".join(module.scope.path) + "/kernel"
    return None


def _conv_rows(module: nn.Conv, x, path: str):
    """The im2col patches of the inputs ``x`` of the Flax conv ``module``, one row per output position."""
    kernel_size = (module.kernel_size,) if isinstance(module.kernel_size, int) else tuple(module.kernel_size)
    padding = canonicalize_padding(module.padding, len(kernel_size))
    if (isinstance(padding, str) and padding not in ("SAME", "VALID")) or module.feature_group_count != 1:
        raise ValueError(
            f"layer {path!r}: a conv with padding {module.padding!r} and feature_group_count "
            f"{module.feature_group_count} has no im2col inputs here (supported: 'SAME', 'VALID' or "
            "explicit padding, feature_group_count 1)"
        )
    x = x.reshape((-1,) + x.shape[x.ndim - len(kernel_size) - 1 :])
    return conv_patches(
        x,
        kernel_size,
        1 if module.strides is None else module.strides,
        padding,
        1 if module.input_dilation is None else module.input_dilation,
        1 if module.kernel_dilation is None else module.kernel_dilation,
    )


def _recorder(wanted: frozenset, seen: dict, prefix: str = ""):
    """An interceptor filling ``seen[path] = (XᵀX, rows)`` for the first call of each wanted layer
    (``prefix`` + its path inside the module being applied)."""

    def record(next_fun, args, kwargs, context):
        path = _kernel_path(context)
        if path is not None:
            path = prefix + path
        if path is not None and path in wanted and path not in seen:
            x = args[0]
            if isinstance(context.module, nn.Conv):
                x = _conv_rows(context.module, x, path)
            x = x.reshape(-1, x.shape[-1]).astype(jnp.float32)
            seen[path] = (x.T @ x, x.shape[0])
        return next_fun(*args, **kwargs)

    return record


def whole_loss(problem, wanted: frozenset):
    """A jitted (params, state, batch) -> {kernel path: (XᵀX, rows)} over the wanted layers, and the
    order in which the loss calls them (filled on the first trace)."""
    order: list[str] = []

    @jax.jit
    def grams(params, state, batch):
        seen: dict = {}
        with nn.intercept_methods(_recorder(wanted, seen)):
            problem.loss(params, state, batch, jax.random.key(0))
        order.extend(p for p in seen if p not in order)
        return seen

    return grams, order


def accumulate(pieces, total: dict | None = None) -> dict[str, Gram]:
    """Σ over calibration batches of {path: (XᵀX, rows)} dicts, as {path: Gram}."""
    total = {} if total is None else total
    for piece in pieces:
        for path, (matrix, rows) in piece.items():
            before = total.get(path)
            total[path] = (
                Gram(matrix, int(rows))
                if before is None
                else Gram(before.matrix + matrix, before.rows + int(rows))
            )
    return total


class Chain(NamedTuple):
    """Blocks called as a chain: each block's unbound module (names cleared, so equal blocks share
    one compiled program), the tree of a block call's (args, kwargs) and its non-array leaves."""

    modules: dict[str, nn.Module]
    treedef: Any
    statics: tuple  # ((leaf index, value), ...)


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, jax.core.Tracer))


def _carried(out):
    """What a block passes on: its output, or the first element of a tuple output (a BERT layer
    also returns its attention maps)."""
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    return out if _is_array(out) else None


def probe(problem, params, state, batch, names: list[str]) -> Chain | None:
    """The chain formed by the modules at paths ``names`` (in call order) in one trace of the loss,
    or None if they are not one: each called exactly once, in this order, and each after the first
    called with the previous one's output (or its first element) as its first argument and every
    other argument the same object (or the same hashable constant) as the first block got."""
    calls: dict[str, list] = {}

    def record(next_fun, args, kwargs, context):
        scope = context.module.scope
        name = "/".join(scope.path) if scope is not None and context.method_name == "__call__" else None
        out = next_fun(*args, **kwargs)
        if name in names:
            calls.setdefault(name, []).append((context.module, args, kwargs, out))
        return out

    def trace(params, state, batch):
        with nn.intercept_methods(record):
            problem.loss(params, state, batch, jax.random.key(0))
        return 0

    jax.eval_shape(trace, params, state, batch)
    if list(calls) != list(names) or any(len(c) != 1 for c in calls.values()):
        return None
    first_leaves, treedef = jax.tree_util.tree_flatten((calls[names[0]][0][1], calls[names[0]][0][2]))
    if not first_leaves or not _is_array(first_leaves[0]):
        return None
    statics = tuple((i, x) for i, x in enumerate(first_leaves) if not _is_array(x))
    try:
        hash(statics)
    except TypeError:
        return None
    for before, after in zip(names, names[1:]):
        leaves, tree = jax.tree_util.tree_flatten((calls[after][0][1], calls[after][0][2]))
        carried = _carried(calls[before][0][3])
        if tree != treedef or carried is None or leaves[0] is not carried:
            return None
        if any(
            (a is not b) if _is_array(b) else (_is_array(a) or a != b)
            for a, b in zip(leaves[1:], first_leaves[1:])
        ):
            return None
    modules = {name: calls[name][0][0].clone(parent=None, name=None) for name in names}
    return Chain(modules, treedef, statics)


def first_inputs(problem, chain: Chain, first: str):
    """A jitted (params, state, batch) -> the array arguments of block ``first``'s call (the rest
    of the forward pass is dead code, which XLA removes)."""

    @jax.jit
    def inputs(params, state, batch):
        found = []

        def record(next_fun, args, kwargs, context):
            scope = context.module.scope
            if not found and scope is not None and "/".join(scope.path) == first:
                found.append((args, kwargs))
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(record):
            problem.loss(params, state, batch, jax.random.key(0))
        leaves = jax.tree_util.tree_leaves(found[0])
        return [x for x in leaves if _is_array(x)]

    return inputs


def block_variables(params, state, name: str) -> dict:
    """The variables of the module at path ``name``: its params and its part of every state collection."""

    def subtree(tree):
        for part in name.split("/"):
            if not isinstance(tree, dict) or part not in tree:
                return None
            tree = tree[part]
        return tree

    variables = {"params": subtree(params)}
    for collection, tree in state.items():
        found = subtree(tree)
        if found is not None:
            variables[collection] = found
    return variables


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _run(module, treedef, statics, wanted, variables, dynamic):
    leaves, it = [], iter(dynamic)
    static = dict(statics)
    for i in range(len(dynamic) + len(statics)):
        leaves.append(static[i] if i in static else next(it))
    args, kwargs = jax.tree_util.tree_unflatten(treedef, leaves)
    seen: dict = {}
    mutable = [c for c in variables if c != "params"]
    with nn.intercept_methods(_recorder(wanted, seen)):
        out = module.apply(variables, *args, mutable=mutable or False, **kwargs)
    return _carried(out[0] if mutable else out), seen


def run_block(chain: Chain, name: str, variables: dict, dynamic: list, wanted: frozenset = frozenset()):
    """Block ``name`` applied alone with ``variables`` to its stored array arguments ``dynamic``:
    (what it passes on, {kernel path inside the block: (XᵀX, rows)} over ``wanted``)."""
    return _run(chain.modules[name], chain.treedef, chain.statics, wanted, variables, dynamic)
