"""The alignment-screen benchmark still runs (its --tiny mode) and both of its paths compute the same scores.
Speed is the benchmark's business, not a test's: nothing here is timed."""

from support.runs import tiny_bench


def test_the_benchmark_scores_pairs_both_ways_alike_and_reports_one_json_line():
    result = tiny_bench("alignment_screen.py")
    assert {"seed_pairs_per_s", "project_pairs_per_s", "ratio", "screen_pairs_per_s"} <= set(result)
    assert result["pairs"] == 60 and result["pairings"] == 60 * 9
    assert result["max_abs_score_difference"] < 1e-4
