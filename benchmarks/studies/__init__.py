"""End-to-end pruning studies; each module runs one, resumably, and writes a Markdown report.
Import the one you need (``from prunax.benchmarks.studies import convergence``)."""
