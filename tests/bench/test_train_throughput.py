"""The training benchmark's smoke mode: it runs both paths and reports every figure (no timing asserts)."""

from support.runs import tiny_bench


def test_tiny_benchmark_reports_both_paths():
    figures = tiny_bench("train_throughput.py")
    for key in ("device", "seed_tokens_per_s", "project_tokens_per_s", "ratio", "seed_loss", "project_loss"):
        assert key in figures, key
    assert figures["tokens"] > 0 and figures["seed_tokens_per_s"] > 0 and figures["project_tokens_per_s"] > 0
    # Both paths train on the same tokens, so the speed-up is the ratio of their throughputs (the report rounds
    # seconds to 0.01 s, too coarse to recompute it from a tiny run's times).
    speedup = figures["project_tokens_per_s"] / figures["seed_tokens_per_s"]
    assert abs(figures["ratio"] - speedup) <= 0.01 * speedup + 0.006
    # The tiny model starts near ln(vocab) = 6.9 and must not diverge on either path.
    assert 0 < figures["seed_loss"] < 7.5 and 0 < figures["project_loss"] < 7.5
    # Time to quality: the project trained until its held-out loss reached the seed's, and the ratio is the
    # seed's one-epoch time over that time.
    assert figures["time_to_loss_ratio"] is not None and figures["time_to_loss_ratio"] > 0
    assert figures["project_time_to_loss_heldout"] <= figures["seed_loss"] + 0.05
    assert figures["project_time_to_loss_seconds"] > 0 and figures["project_time_to_loss_steps"] > 0
