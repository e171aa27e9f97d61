"""make bench-gpu's smoke mode: every benchmark runs, the profile is written, the headline figures are there."""

import json

from support.runs import tiny_bench
from tasks.train import loop as trainloop


def test_tiny_gpu_bench_runs_every_part_and_writes_the_profile(tmp_path):
    figures = tiny_bench("gpu.py", "--out", str(tmp_path))
    for part in ("train", "eval", "alignment", "profile"):
        assert "error" not in figures[part], figures[part]
    for key in ("train_ratio", "time_to_loss_ratio", "eval_ratio", "alignment_pairs_per_s", "project_tokens_per_s"):
        assert figures[key] is not None and figures[key] > 0, key
    assert figures["profile"]["steps"] == 10 and figures["profile"]["top"]
    # The next lease compares the old 5 % warmup with the automatic one (which follows the peak rate) at the
    # time-to-quality run (the plateau), and reads both against the loss of a model that ignores its source.
    by_warmup = figures["train"]["time_to_loss_by_warmup"]["0.05"]
    assert by_warmup["project_time_to_loss_steps"] > 0
    assert by_warmup["warmup_steps"] == int(0.05 * by_warmup["scheduled_steps"])
    assert figures["train"]["warmup_steps"] == int(trainloop.auto_warmup(figures["train"]["project_learning_rate"])
                                                   * figures["train"]["scheduled_steps"])
    assert 0 < figures["train"]["unigram_loss"] < figures["train"]["initial_loss"]
    assert "Name" in (tmp_path / "profile.txt").read_text()
    assert json.loads((tmp_path / "bench-gpu.json").read_text())["train"] == figures["train"]
