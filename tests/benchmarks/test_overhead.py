"""The overhead benchmark's rows and report on the test-size ResNet (no wall time is asserted)."""

import pytest

from prunax.benchmarks.speed import overhead
from tests.assets import needs

pytestmark = needs("sklearn")


def test_rows_and_report():
    rows = overhead.run("resnet", "test", batch_size=16, repeats=1, methods=("magnitude",))
    assert [r["method"] for r in rows] == ["magnitude"]
    for r in rows:
        assert r["plain_ms"] > 0 and r["between"] == pytest.approx(r["between_ms"] / r["plain_ms"])
    text = overhead.report(rows, "resnet", "test", 16)
    assert "| magnitude |" in text
    with pytest.raises(ValueError, match="valid"):
        overhead.run("resnet", "test", methods=("obs",))
