"""make bench-gpu's smoke mode: every benchmark runs, the profile is written, the headline figures are there."""

import json
import subprocess
import sys
from pathlib import Path

from support.runs import cli_env

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gpu.py"


def test_tiny_gpu_bench_runs_every_part_and_writes_the_profile(tmp_path):
    out = subprocess.run([sys.executable, str(BENCH), "--tiny", "--out", str(tmp_path)], env=cli_env(),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    for part in ("train", "eval", "alignment", "profile"):
        assert "error" not in figures[part], figures[part]
    for key in ("train_ratio", "time_to_loss_ratio", "eval_ratio", "alignment_pairs_per_s", "project_tokens_per_s"):
        assert figures[key] is not None and figures[key] > 0, key
    assert figures["profile"]["steps"] == 10 and figures["profile"]["top"]
    assert "Name" in (tmp_path / "profile.txt").read_text()
    assert json.loads((tmp_path / "bench-gpu.json").read_text())["train"] == figures["train"]
