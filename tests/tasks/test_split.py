import json
from collections import Counter

from support.corpora import write_jsonl
from support.runs import make_run
from tasks import split, storage, validate


def test_assignment_is_stable_and_ignores_case_and_spacing():
    assert split.bucket("Cannot open  the file.") == split.bucket("cannot open the file.")
    assert 0 <= split.bucket("x") < 1
    assert split.assign("Hello world", 0.1, 0.1) == split.assign("hello   world", 0.1, 0.1)


def test_shares_follow_the_fractions():
    counts = Counter(split.assign(f"sentence {i}", 0.1, 0.05) for i in range(20000))
    assert abs(counts["test"] / 20000 - 0.10) < 0.01
    assert abs(counts["validation"] / 20000 - 0.05) < 0.01


def test_run_writes_three_splits_that_partition_clean(tmp_path):
    cfg = make_run(tmp_path, test_fraction=0.2, validation_fraction=0.2)
    pairs = [(f"message {i}", f"Nachricht {i}") for i in range(300)]
    write_jsonl(tmp_path / "clean.jsonl", pairs)
    storage.upload_file(tmp_path / "clean.jsonl", cfg.uri(validate.CLEAN))
    report = split.run(cfg)
    seen = []
    for name in split.SPLITS:
        lines = storage.read_text(split.split_uri(cfg, name)).splitlines()
        assert len(lines) == report["counts"][name] > 0
        seen += [json.loads(line)["translation"]["en"] for line in lines]
    assert sorted(seen) == sorted(p[0] for p in pairs)
    assert split.run(cfg) == report  # a retry returns the stored result
