"""make bench-gpu's smoke mode: every benchmark runs, the profile is written, the headline figures are there."""

import json

from support.runs import tiny_bench


def test_tiny_gpu_bench_runs_every_part_and_writes_the_profile(tmp_path):
    figures = tiny_bench("gpu.py", "--out", str(tmp_path))
    for part in ("train", "eval", "alignment", "profile"):
        assert "error" not in figures[part], figures[part]
    for key in ("train_ratio", "time_to_loss_ratio", "eval_ratio", "alignment_pairs_per_s", "project_tokens_per_s"):
        assert figures[key] is not None and figures[key] > 0, key
    assert figures["profile"]["steps"] == 10 and figures["profile"]["top"]
    # The next lease compares the fixed 1e-4 with the automatic learning rate at the time-to-quality run (the
    # plateau), and reads both against the loss of a model that ignores its source.
    assert figures["train"]["time_to_loss_by_lr"]["1e-4"]["learning_rate"] == 1e-4
    assert figures["train"]["time_to_loss_by_lr"]["1e-4"]["project_time_to_loss_steps"] > 0
    assert 0 < figures["train"]["unigram_loss"] < figures["train"]["initial_loss"]
    assert "Name" in (tmp_path / "profile.txt").read_text()
    assert json.loads((tmp_path / "bench-gpu.json").read_text())["train"] == figures["train"]
