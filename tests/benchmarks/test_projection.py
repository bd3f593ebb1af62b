import pytest

from prunax.benchmarks.speed import projection


def test_run_and_report_small():
    rows = projection.run(sizes=(5_000,), fractions=(0.5, 0.01), repeats=2, budget_s=0.5)
    assert {r.method for r in rows} == set(projection.METHODS)
    assert len(rows) == 2 * len(projection.METHODS) and all(r.median_ms > 0 and r.runs >= 1 for r in rows)
    sharded = [{"n": 5_000, "fraction": 0.5, "one": 1.0, "sharded": 1.5, "identical": True}]
    text = projection.report(rows, sharded)
    assert "| 5e+03 | 0.5 |" in text and "speed-up" in text and "NumPy" in text
    assert "≤ 2× the floor" in text and "| 1.50x | yes |" in text


def test_sharded_half_on_forced_host_devices():
    """The subprocess half: 8 forced host devices, the same projection as one device."""
    (cell,) = projection.run_sharded(sizes=(40_000,), fractions=(0.1,), repeats=1)
    assert cell["identical"] and cell["one"] > 0 and cell["sharded"] > 0


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError, match="valid: \\['prunax project'"):
        projection.run(sizes=(10,), methods=("prunax project", "heapq"))
