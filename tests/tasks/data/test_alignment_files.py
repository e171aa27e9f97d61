"""The alignment screen against exports broken in one file of a batch: what the screen does not catch of such a
file must not train either."""

import json
import random

from support.corpora import DE, EN, digit_pairs, write_jsonl
from support.runs import accounted, validate_files
from tasks import layout
from tasks.data import alignment
from tasks.io import storage


def _near_twins(n: int, seed: int) -> list[tuple[str, str]]:
    """Sources in runs of four that differ only in their last word ("Open file", "Open files"): a target shifted
    by one line is then almost its source's translation, and only the run's last one is plainly wrong."""
    rng = random.Random(seed)
    pairs, seen = [], set()
    while len(pairs) < n:
        stem = [rng.randrange(10) for _ in range(rng.randint(3, 5))]
        for last in rng.sample(range(10), 4):
            en = " ".join(EN[d] for d in stem + [last])
            if en not in seen:
                seen.add(en)
                pairs.append((en, " ".join(DE[d] for d in stem + [last])))
    return pairs[:n]


def test_what_the_screen_misses_of_a_shifted_file_in_a_larger_batch_does_not_train(tmp_path, digits_translator):
    """One file of seven lost a target line: every pair of it is wrong, the screen catches the plainly wrong ones
    (over max_misaligned_rate of the file), the batch as a whole stays under it. The rest of that file is not
    trusted either: none of it reaches clean.jsonl or its cleaned copy, each row is in rejects.jsonl with the
    reason naming the file, and the other files keep their pairs."""
    twins = _near_twins(201, seed=3)
    shifted = [(s, t) for (s, _), (_, t) in zip(twins, twins[1:])]
    files = [write_jsonl(tmp_path / f"good-{n}.jsonl", digit_pairs(200, seed=40 + n)) for n in range(6)]
    files.append(write_jsonl(tmp_path / "shifted.jsonl", shifted))
    cfg, error = validate_files(tmp_path / "artifacts", files, base_model=str(digits_translator),
                                alignment_screen=True)
    assert error is None  # the batch's share of misaligned pairs is under max_misaligned_rate
    report, clean, rejects = accounted(cfg)
    assert not [r for r in clean if r["file"] == "shifted.jsonl"]
    refused = {r["line"]: r for r in rejects if r["file"] == "shifted.jsonl"}
    assert set(refused) == set(range(1, len(shifted) + 1))
    assert all(x["reason"] == "misaligned" for r in refused.values() for x in r["reasons"])
    assert report["files"]["shifted.jsonl"]["kept"] == 0
    assert "shifted.jsonl" in report["alignment"]["broken_files"]
    assert not {"good-0.jsonl", "good-1.jsonl"} & set(report["alignment"]["broken_files"])
    good_kept = sum(report["files"][f"good-{n}.jsonl"]["kept"] for n in range(6))
    assert good_kept >= 0.95 * 1200
    manifest = storage.read_json(cfg.uri(layout.PULL_MANIFEST))
    copies = [json.loads(line) for line in storage.read_text(cfg.uri(layout.CLEANED_COPIES)).splitlines()]
    assert manifest and not [r for r in copies if r["file"] == "shifted.jsonl"]


def _screened(margins):
    return alignment.Screened(margins, [0.0], threshold=0.5, calibrated=True, estimated_share=0.0, seconds=1.0)


def test_a_file_is_broken_only_over_the_rate_in_a_batch_under_it_and_with_enough_pairs_to_tell():
    """Over the rate as a whole, the batch is validate's to fail (and a general-domain test set of one file keeps
    what the screen passed); a small file's share is noise."""
    bad, good = [0.0] * 30 + [2.0] * 30, [2.0] * 57 + [0.0] * 3  # 50 % and 5 % misaligned
    files = ["bad"] * 60 + ["good"] * 540
    found = alignment.broken_files(files, _screened(bad + good * 9), 0.2)
    assert found == {"bad": {"pairs": 60, "misaligned": 30}}
    assert alignment.broken_files(["bad"] * 60, _screened(bad), 0.2) == {}  # the batch is over the rate itself
    small = ["bad"] * 40 + ["good"] * 540
    assert alignment.broken_files(small, _screened([0.0] * 20 + [2.0] * 20 + good * 9), 0.2) == {}


class _Recording:
    """A scorer that records the pairings the screen asks for (every score 0)."""

    def __init__(self):
        self.asked = []

    def encode(self, inputs, outputs):
        return None

    def score(self, data, pairs):
        self.asked += pairs
        return [0.0] * len(pairs)

    def describe(self):
        return {"model": "recording"}


def test_the_benchmark_times_the_pairings_the_screen_scores():
    """bench/alignment_screen.py says it times what the screen compares: the same neighbours, found by the same
    keys ("Open file" and "open  file" are one source; "Open file..." another)."""
    import importlib.util

    from support.runs import REPO_ROOT

    spec = importlib.util.spec_from_file_location("alignment_bench", REPO_ROOT / "bench" / "alignment_screen.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = random.Random(5)
    words = ["Open", "file", "Save", "as", "Quit", "Close", "all", "files", "...", "now", "Print", "page"]
    sources = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 4))) for _ in range(200)]
    targets = [f"Ziel {n}" for n in range(200)]
    recording = _Recording()
    alignment.screen(recording, sources, targets)
    assert sorted(bench.screen_pairings(sources, targets)) == sorted(recording.asked)
