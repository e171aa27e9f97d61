"""The evaluation benchmark's smoke mode: all three paths run and every figure is reported (no timing asserts)."""

from support.runs import tiny_bench


def test_tiny_benchmark_reports_every_figure(tmp_path):
    figures = tiny_bench("eval_throughput.py", "--cache", str(tmp_path / "cache"))
    for key in ("device", "seed_sentences_per_s", "project_sentences_per_s", "ratio", "bleu_delta_vs_transformers"):
        assert key in figures, key
    assert figures["sentences"] == 24 and figures["seed_sentences_per_s"] > 0 and figures["project_sentences_per_s"] > 0
    assert figures["project_engine"] == "ctranslate2 (fp32)"  # the tiny Marian model converts faithfully
    assert figures["bleu_delta_vs_transformers"] == round(figures["bleu_project"] - figures["bleu_transformers"], 2)
    scored = figures["scoring"]
    assert scored["systems"] == 3 and scored["same_figures"] is True  # the step's scoring equals sacrebleu's calls
    assert scored["project_s"] > 0 and scored["sacrebleu_calls_s"] > 0
