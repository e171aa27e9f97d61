"""The alignment study (devtools/alignment_study.py) measures what the screen decides: its "mean" pooling with
the calibrated rule is the screen's own computation, so on the same rotated batch it finds the same threshold and
rejects as many pairs as validate's screen does."""

import json

from devtools import alignment_study
from support.corpora import digit_pairs, rotate_targets, write_jsonl
from support.runs import validate_files
from tasks import layout
from tasks.io import storage


def test_the_studys_mean_rule_rejects_what_the_screen_rejects(tmp_path, digits_translator):
    pairs = digit_pairs(600, seed=5)
    found = alignment_study.study(digits_translator, None, pairs, 0.15, tmp_path / "study")

    rotated_pairs, _ = rotate_targets(pairs, 0.15)
    cfg, _ = validate_files(tmp_path / "screened", [write_jsonl(tmp_path / "catalog.jsonl", rotated_pairs)],
                            base_model=str(digits_translator), alignment_screen=True)
    screen = storage.read_json(cfg.uri(layout.VALIDATION_REPORT))["alignment"]

    assert found["screened"] == screen["screened"] and found["rotated"] == 90
    assert found["mean"]["rule_threshold"] == screen["threshold"]
    assert found["mean"]["rule_rejected"] == screen["misaligned"]
    # The digit translator reads its pairs well: every pooling separates them.
    for pooling in ("mean", "z", "z_every_wrong"):
        assert found[pooling]["oracle_caught"] >= 0.9, json.dumps(found)
    assert 0 <= found["z"]["rule_lost"] <= 0.05
