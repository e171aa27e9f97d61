"""The validation benchmark still runs (its --tiny mode): the real validate and split, its JSON last line.
Speed is the benchmark's business, not a test's: nothing here is timed."""

import json
import subprocess
import sys

from support.runs import REPO_ROOT, cli_env


def test_the_benchmark_runs_validate_and_split_and_reports_one_json_line():
    done = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "validate_throughput.py"), "--tiny"],
                          env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"pairs", "seconds", "pairs_per_s", "peak_mib"} <= set(result)
    assert result["pairs"] == 2000 == result["kept"] + result["rejected"] + result["deduplicated"]
    assert sum(result["splits"].values()) == result["kept"]
    # The generator plants every kind of bad pair: each must be caught.
    assert {"duplicate", "empty", "wrong_language", "length_ratio"} <= set(result["reasons"])
