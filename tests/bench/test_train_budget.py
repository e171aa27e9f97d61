"""The budget benchmark's smoke mode: both recipes train for the same time and are scored alike (no timing
asserts: what either reaches in a few seconds on a loaded machine says nothing)."""

from support.runs import tiny_bench


def test_tiny_benchmark_reports_both_recipes(tmp_path):
    figures = tiny_bench("train_budget.py", "--cache", str(tmp_path))
    assert figures["budget_s"] == 6.0 and figures["project_stopped_by"] in ("time budget", "early stopping")
    assert figures["plain_steps"] > 0 and figures["project_steps"] > 0
    # Both start from the same untrained model (initial_loss) and learn: neither may diverge.
    assert 0 < figures["plain_loss"] < figures["initial_loss"] and 0 < figures["project_loss"] < figures["initial_loss"]
    assert isinstance(figures["project_reaches_plain"], bool)
