"""The tokenizing benchmark still runs (its --tiny mode, in 2 processes) and its three ways give the same ids.
Speed is the benchmark's business, not a test's: nothing here is timed."""

from support.runs import tiny_bench


def test_the_benchmark_tokenizes_three_ways_alike_and_reports_one_json_line():
    result = tiny_bench("tokenize_throughput.py")
    assert {"seed_pairs_per_s", "one_process_pairs_per_s", "project_pairs_per_s", "ratio"} <= set(result)
    assert result["pairs"] == 5000 and result["workers"] == 2 and result["tokenizer"] == "MarianTokenizer"
    assert result["same_ids"] is True
