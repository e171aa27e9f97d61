"""The validation benchmark still runs (its --tiny mode): the real validate and split, its JSON last line.
Speed is the benchmark's business, not a test's: nothing here is timed."""

from support.runs import tiny_bench


def test_the_benchmark_runs_validate_and_split_and_reports_one_json_line():
    result = tiny_bench("validate_throughput.py")
    assert {"pairs", "seconds", "pairs_per_s", "peak_mib"} <= set(result)
    assert result["pairs"] == 2000 == result["kept"] + result["rejected"] + result["deduplicated"]
    assert sum(result["splits"].values()) == result["kept"]
    # The generator plants every kind of bad pair: each must be caught.
    assert {"duplicate", "empty", "wrong_language", "length_ratio"} <= set(result["reasons"])
