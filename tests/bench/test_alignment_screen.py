"""The alignment-screen benchmark still runs (its --tiny mode) and both of its paths compute the same scores.
Speed is the benchmark's business, not a test's: nothing here is timed."""

import json
import subprocess
import sys

from support.runs import REPO_ROOT, cli_env


def test_the_benchmark_scores_pairs_both_ways_alike_and_reports_one_json_line():
    done = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "alignment_screen.py"), "--tiny"],
                          env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"seed_pairs_per_s", "project_pairs_per_s", "ratio", "screen_pairs_per_s"} <= set(result)
    assert result["pairs"] == 60 and result["pairings"] == 60 * 9
    assert result["max_abs_score_difference"] < 1e-4
