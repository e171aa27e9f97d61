"""The evaluation benchmark's smoke mode: all three paths run and every figure is reported (no timing asserts)."""

from support.runs import tiny_bench


def test_tiny_benchmark_reports_every_figure(tmp_path):
    figures = tiny_bench("eval_throughput.py", "--cache", str(tmp_path / "cache"))
    for key in ("device", "seed_sentences_per_s", "project_sentences_per_s", "ratio", "bleu_delta_vs_transformers"):
        assert key in figures, key
    assert figures["sentences"] == 24 and figures["seed_sentences_per_s"] > 0 and figures["project_sentences_per_s"] > 0
    assert figures["project_engine"] == "ctranslate2 (fp32)"  # the tiny Marian model converts faithfully
    assert figures["engine_fallback"] == []
    assert figures["bleu_delta_vs_transformers"] == round(figures["bleu_project"] - figures["bleu_transformers"], 2)
    scored = figures["scoring"]
    assert scored["systems"] == 3 and scored["same_figures"] is True  # the step's scoring equals sacrebleu's calls
    assert scored["project_s"] > 0 and scored["sacrebleu_calls_s"] > 0


def test_on_the_lent_machine_the_figures_say_what_was_measured_and_outlive_a_failed_comparison(
        tmp_path, monkeypatch, capsys):
    """On the lent GPU machine CTranslate2 is missing (or finds no cuBLAS 12): the project's figures are then the
    transformers fallback's, and the JSON line must say why, not only which engine ran. And a comparison after the
    decoding that fails (here the scoring one) must not take the decoding's figures with it."""
    import json
    import sys

    import pytest

    from support.runs import REPO_ROOT

    monkeypatch.syspath_prepend(str(REPO_ROOT / "bench"))
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import ctranslate2 raises ImportError
    import eval_throughput

    def fails(*args, **kwargs):
        raise RuntimeError("sacrebleu changed")

    monkeypatch.setattr(eval_throughput, "scoring_comparison", fails)
    with pytest.raises(RuntimeError, match="sacrebleu changed"):
        eval_throughput.main(["--tiny", "--cache", str(tmp_path / "cache")])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["ratio"] > 0 and figures["project_engine"].startswith("transformers")
    assert len(figures["engine_fallback"]) == 1 and "ctranslate2 cannot be imported" in figures["engine_fallback"][0]
