"""Where a run's arrays live (docs/solvers.md, "Data-parallel runs"): on one device, or on a
``jax.sharding.Mesh`` with every batch sharded over the mesh's ``"data"`` axis.

On a mesh, each step is one SPMD program: every device computes the loss and gradients of its
slice of the batch and XLA adds the gradients across the data axis, so the update is that of the
whole batch (BatchNorm statistics too: a batch mean reduces over all devices). Parameters, model
and solver state are replicated, or sharded by ``param_sharding(path, leaf) -> PartitionSpec``
(optimizer and solver state that mirror a parameter follow it: they are made from it). The step
is jitted with its output shardings equal to its input shardings, so it compiles once.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from prunax.constraints import path_str

DATA_AXIS = "data"


def local_mesh() -> Mesh:
    """Every local device on one data axis (``mesh="local"``)."""
    return Mesh(np.asarray(jax.local_devices()), (DATA_AXIS,))


class Placement:
    """One device (``mesh=None``: arrays stay where JAX puts them) or a mesh with a data axis."""

    def __init__(self, mesh: Mesh | str | None, param_sharding: Callable | None, kind: str):
        if isinstance(mesh, str):
            if mesh != "local":
                raise ValueError(f"{kind}: mesh must be a jax.sharding.Mesh, 'local' or None, got {mesh!r}")
            mesh = local_mesh()
        if mesh is not None and not isinstance(mesh, Mesh):
            raise ValueError(f"{kind}: mesh must be a jax.sharding.Mesh, 'local' or None, got {mesh!r}")
        if mesh is not None and DATA_AXIS not in mesh.axis_names:
            raise ValueError(
                f"{kind}: the mesh's axes {mesh.axis_names} have no {DATA_AXIS!r} axis to shard batches over"
            )
        if param_sharding is not None and mesh is None:
            raise ValueError(f"{kind}: param_sharding needs a mesh")
        self.mesh, self.param_sharding, self.kind = mesh, param_sharding, kind

    @property
    def data_size(self) -> int:
        return 1 if self.mesh is None else self.mesh.shape[DATA_AXIS]

    def describe(self) -> dict | None:
        """The mesh for a run's fingerprint (None on one device)."""
        if self.mesh is None:
            return None
        return {"axes": dict(self.mesh.shape), "param_sharding": repr(self.param_sharding)}

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size % self.data_size:
            raise ValueError(
                f"{self.kind}: batch_size {batch_size} is not a multiple of the mesh's {DATA_AXIS!r} "
                f"axis ({self.data_size} devices), so the batch cannot be split evenly"
            )

    def _replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def params(self, params):
        """Parameters placed by ``param_sharding`` (replicated by default)."""
        if self.mesh is None:
            return params

        rule = self.param_sharding or (lambda path, leaf: PartitionSpec())

        def place(path, leaf):
            spec = rule(path_str(path), leaf)
            return jax.device_put(leaf, NamedSharding(self.mesh, spec))

        return jax.tree_util.tree_map_with_path(place, params)

    def tree(self, tree):
        """Every leaf not already on the mesh replicated onto it (states made from the parameters
        keep their shardings)."""
        if self.mesh is None:
            return tree

        def place(leaf):
            sharding = getattr(leaf, "sharding", None)
            if isinstance(sharding, NamedSharding) and sharding.mesh == self.mesh:
                return leaf
            return jax.device_put(leaf, self._replicated())

        return jax.tree_util.tree_map(place, tree)

    def batch(self, batch):
        """A training batch sharded over the data axis along its leading (example) axis. Every
        process builds the same global batch, so on several hosts each takes its own slices."""
        if self.mesh is None:
            return batch
        sharding = NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))

        def place(leaf):
            leaf = np.asarray(leaf)
            return jax.make_array_from_callback(leaf.shape, sharding, lambda index: leaf[index])

        return jax.tree_util.tree_map(place, batch)

    def jit_step(self, step, carry):
        """``step(params, state, opt_state, batch, key)`` jitted; on a mesh its outputs keep the
        shardings of ``carry`` = (params, state, opt_state), so the next call reuses the compile."""
        if self.mesh is None:
            return jax.jit(step)
        shardings = jax.tree_util.tree_map(lambda leaf: leaf.sharding, carry)
        return jax.jit(step, out_shardings=(*shardings, self._replicated()))
