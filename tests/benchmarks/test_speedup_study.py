"""The speedup study on the test ResNet through the command line: prune to coupled channels,
retrain, compact, time, report."""

import json

import pytest

from prunax.benchmarks import configs
from prunax.benchmarks.studies import speedup
from prunax.cli import main
from tests.assets import needs

pytestmark = needs("sklearn")


def test_speedup_study_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNAX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "study"
    argv = ["bench", "speedup", "--models", "resnet8", "--size", "test", "--sparsities", "0.5"]
    argv += ["--methods", "gradual", "--solve-epochs", "1", "--retrain-epochs", "0", "--repeats", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    (row,) = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert row["widths"] == {"widths": [4, 8, 16], "inner": [4, 8, 16]}  # half of (8, 16, 32)
    assert row["compact_params"] < row["params"] and row["compact_flops"] < row["flops"]
    assert set(row["latency_ms"]) == {"1", "64"} and all(t["compact"] > 0 for t in row["latency_ms"].values())
    assert row["compact_metric"] == pytest.approx(
        row["hard_prune"], abs=1e-9
    )  # no retraining: the hard prune
    text = (out / "report.md").read_text()
    assert "| resnet8 | 0.5 |" in text and "largest difference 0" in text
    assert (out / "speedup.png").stat().st_size > 0


def test_unknown_models_and_methods_are_setting_errors():
    with pytest.raises(configs.SettingError, match=r"unknown models \['vgg'\]"):
        configs.SpeedupStudy(models=("vgg",))
    with pytest.raises(configs.SettingError, match=r"unknown methods \['rgl'\]"):
        configs.SpeedupStudy(methods=("rgl",))
    assert configs.SpeedupStudy(size="test").model("minilm") == ("bert", "test", "head+neuron", 32, 1e-4)
    assert speedup.conclusions([], configs.SpeedupStudy()) == []
