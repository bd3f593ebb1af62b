"""Benchmarks and studies (docs/benchmarks.md), each a subpackage imported on first use:

* ``studies``: end-to-end pruning studies that write Markdown reports (``convergence``, the main
  job, ``blocks``, ``distillation``, ``forms``, ``allocation``, ``rt3``, ``bias``, ``support``);
* ``speed``: side-by-side timings (``projection``, ``families``, ``overhead``);
* ``hardware``: cost models of pruned layers (``crossbar``, ``cost_table``, ``layer_inputs``).

``prunax bench`` runs them from the command line.
"""

import importlib

_SUBPACKAGES = ("hardware", "speed", "studies")

__all__ = list(_SUBPACKAGES)


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"prunax.benchmarks.{name}")
    raise AttributeError(f"module 'prunax.benchmarks' has no attribute {name!r}")
