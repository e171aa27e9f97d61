"""The evaluation benchmark's smoke mode: all three paths run and every figure is reported (no timing asserts)."""

import json
import subprocess
import sys
from pathlib import Path

from support.runs import cli_env

BENCH = Path(__file__).resolve().parents[2] / "bench" / "eval_throughput.py"


def test_tiny_benchmark_reports_every_figure(tmp_path):
    out = subprocess.run([sys.executable, str(BENCH), "--tiny", "--cache", str(tmp_path / "cache")], env=cli_env(),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("device", "seed_sentences_per_s", "project_sentences_per_s", "ratio", "bleu_delta_vs_transformers"):
        assert key in figures, key
    assert figures["sentences"] == 24 and figures["seed_sentences_per_s"] > 0 and figures["project_sentences_per_s"] > 0
    assert figures["project_engine"] == "ctranslate2 (fp32)"  # the tiny Marian model converts faithfully
    assert figures["bleu_delta_vs_transformers"] == round(figures["bleu_project"] - figures["bleu_transformers"], 2)
