import pytest

from prunax.benchmarks.speed import projection


def test_run_and_report_small():
    rows = projection.run(sizes=(5_000,), fractions=(0.5, 0.01), repeats=2, budget_s=0.5)
    assert {r.method for r in rows} == set(projection.METHODS)
    assert len(rows) == 2 * len(projection.METHODS) and all(r.median_ms > 0 and r.runs >= 1 for r in rows)
    text = projection.report(rows)
    assert "| 5e+03 | 0.5 |" in text and "prunax speed-up" in text and "np.partition" in text


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError, match="valid: \\['prunax'"):
        projection.run(sizes=(10,), methods=("prunax", "heapq"))
