"""The per-family projection timing rows and report (no wall time is asserted)."""

import pytest

from prunax.benchmarks.speed import families


def test_every_family_is_timed_and_reported():
    rows = families.run(sizes=(4096,), repeats=1, budget_s=0.1)
    assert [r["family"] for r in rows] == list(families.FAMILIES)
    assert all(r["ms"] > 0 and r["floor_ms"] > 0 and r["entries"] > 0 for r in rows)
    text = families.report(rows)
    assert all(f"| {family} |" in text for family in families.FAMILIES)
    with pytest.raises(ValueError, match="valid"):
        families.run(sizes=(4096,), families=("diagonal",))
