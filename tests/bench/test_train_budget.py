"""The budget benchmark's smoke mode: both recipes train for the same time and are scored alike (no timing
asserts: what either reaches in a few seconds on a loaded machine says nothing)."""

import json
import subprocess
import sys
from pathlib import Path

from support.runs import cli_env

BENCH = Path(__file__).resolve().parents[2] / "bench" / "train_budget.py"


def test_tiny_benchmark_reports_both_recipes(tmp_path):
    out = subprocess.run([sys.executable, str(BENCH), "--tiny", "--cache", str(tmp_path)], env=cli_env(),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["budget_s"] == 6.0 and figures["project_stopped_by"] in ("time budget", "early stopping")
    assert figures["plain_steps"] > 0 and figures["project_steps"] > 0
    # Both start from the same untrained model (initial_loss) and learn: neither may diverge.
    assert 0 < figures["plain_loss"] < figures["initial_loss"] and 0 < figures["project_loss"] < figures["initial_loss"]
    assert isinstance(figures["project_reaches_plain"], bool)
