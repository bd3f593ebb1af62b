"""The FORMS study's pieces on the resnet test size: im2col windows against the conv itself, the
recorded layer inputs, and one short run whose pruned convs have no polarity violations."""

import json

import jax
import numpy as np
import pytest

from prunax import problems, solvers
from prunax.benchmarks.hardware import layer_inputs
from prunax.benchmarks.studies import forms as forms_study
from prunax.cli import main
from prunax.problems import resnet
from tests.assets import needs

pytestmark = needs("sklearn")


@pytest.mark.parametrize("stride", [1, 2])
def test_im2col_rows_times_the_kernel_matrix_are_the_conv_outputs(stride):
    rng = np.random.default_rng(stride)
    x = rng.standard_normal((2, 7, 8, 3)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 3, 5)).astype(np.float32)
    conv = jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    rows, (b, oy, ox) = layer_inputs.im2col_windows(x, (3, 3), (stride, stride), 40, rng)
    np.testing.assert_allclose(rows @ kernel.reshape(-1, 5), np.asarray(conv)[b, oy, ox], atol=1e-4)


def test_a_short_run_records_costs_and_leaves_no_polarity_violations(tmp_path):
    problem = problems.get("resnet", "test")
    params, state = problem.init(jax.random.key(0))
    x = next(problem.batches("test", jax.random.key(0), 8))["x"]
    inputs = layer_inputs.conv_inputs(resnet.model_of(problem), {"params": params, **state}, x)
    assert inputs["stage2_block1/conv1/kernel"][1] == (2, 2)
    assert inputs["stage1_block1/conv1/kernel"][0].shape == (8, 8, 8, 8)
    out = tmp_path / "study"
    argv = ["bench", "forms", "--size", "test", "--structures", "unstructured", "--sparsity", "0.5"]
    argv += ["--fragments", "4", "--solve-epochs", "1", "--retrain-epochs", "1", "--out", str(out)]
    assert main(argv) == 0
    rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows] == ["unstructured-fnone", "unstructured-f4"]
    polarized = rows[1]["cost"]
    assert polarized["violations"] == 0 and rows[0]["cost"]["violations"] > 0
    assert polarized["crossbars_FORMS"] <= rows[1]["dense_cost"]["crossbars_FORMS"]
    assert 0 <= polarized["skipped_fraction"] <= 1 and polarized["speedup"] >= 1
    assert "| unstructured | 4 |" in (out / "report.md").read_text() and (out / "forms.png").exists()
    study = forms_study.FormsStudy(
        size="test",
        structures=("unstructured",),
        sparsity=0.5,
        fragments=(4,),
        solve_epochs=1,
        retrain_epochs=1,
    )
    assert forms_study.run(study, out, resume=True) == rows  # finished runs are not redone


@pytest.mark.parametrize("setting, value, rule", [("lr", 0.0, "> 0"), ("seed", -1, ">= 0")])
def test_every_rate_and_seed_is_checked(setting, value, rule):
    with pytest.raises(ValueError, match=f"^forms: {setting} must be {rule}, got {value}$") as raised:
        forms_study.FormsStudy(**{setting: value})
    assert raised.value.setting == setting


def test_an_unknown_structure_fails_before_any_training(tmp_path, monkeypatch):
    monkeypatch.setattr(solvers, "pretrained", lambda *a, **k: pytest.fail("trained before checking"))
    study = forms_study.FormsStudy(size="test", structures=("unstructured", "nosuch"))
    with pytest.raises(ValueError, match="unknown structure 'nosuch' for resnet; valid: unstructured, "):
        forms_study.run(study, tmp_path)
