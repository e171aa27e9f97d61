import json
import re
from collections import Counter

import pytest

from support.corpora import write_jsonl, write_tsv
from support.runs import accounted, make_run, put_raw
from tasks import layout
from tasks.data import split, testset, textnorm, validate
from tasks.io import storage


def _pairs(n, start=0, word="message"):
    return [(f"The {word} number {i} was shown.", f"Die Meldung Nummer {i} wurde gezeigt.") for i in range(start, start + n)]


def _split_lines(cfg, name):
    return [json.loads(line) for line in storage.read_text(cfg.uri(layout.split_file(name))).splitlines()]


def _sources(records):
    return {r["translation"]["en"] for r in records}


def test_assignment_is_stable_and_ignores_case_spacing_and_compatibility_forms():
    assert split.assign("Cannot open  the file.", 0.1, 0.1) == split.assign("CANNOT open the file.", 0.1, 0.1)
    assert split.assign("ﬁle", 0.1, 0.1) == split.assign("file", 0.1, 0.1)  # NFKC: the 'fi' ligature
    assert split.assign("Hello world", 0.1, 0.1) == split.assign("hello   world", 0.1, 0.1)


def test_a_test_sentence_written_with_other_punctuation_is_still_the_test_sentence(tmp_path):
    """Leakage and the split compared sources after case, NFKC and spacing only: the same sentence exported again
    without its full stop or with typographic quotes was another sentence. In the first run its variants hashed
    apart, into train beside the test set; in later runs they were not leakage, and trained."""
    def words(source):
        return " ".join(re.sub(r"[^\w\s]", " ", source.lower()).split())

    def variant(source):
        return source.replace("The", "“The").replace(" was shown.", "” was shown!")

    pairs = _pairs(200)
    first = _validated_run(tmp_path, "run-1", pairs + [(variant(s), t) for s, t in pairs[:100]])
    split.run(first)
    test = {words(s) for s in _sources(_split_lines(first, "test"))}
    trained = _sources(_split_lines(first, "train") + _split_lines(first, "validation"))
    assert test and not {words(s) for s in trained} & test

    later = [(s.rstrip("."), t) for s, t in pairs] + [(variant(s), t) for s, t in pairs]
    second = _validated_run(tmp_path, "run-2", later + _pairs(50, start=1000))
    split.run(second)
    report, _, _ = accounted(second)
    assert report["leakage"] == sum(words(s) in test for s, _ in later) > 0
    trained = _sources(_split_lines(second, "train") + _split_lines(second, "validation"))
    assert not {words(s) for s in trained} & test


def test_a_run_validated_before_the_upgrade_is_told_why_its_split_is_refused(tmp_path, monkeypatch):
    """validate ran with the key that kept punctuation (before the upgrade) and split after it: the test sentences
    without their full stop are leakage now. The run is refused, but not for a set "frozen after this run's
    validation": run-1 froze it long before."""
    pairs = _pairs(200)
    split.run(_validated_run(tmp_path, "run-1", pairs))
    with monkeypatch.context() as old_code:
        old_code.setattr(textnorm, "source_form", lambda text, matched=None: matched or textnorm.match_key(text))
        second = _validated_run(tmp_path, "run-2", [(s.rstrip("."), t) for s, t in pairs] + _pairs(50, 1000))
    report = storage.read_json(second.uri(layout.VALIDATION_REPORT))
    assert report.pop("source_key") == split.KEY
    storage.write_json(second.uri(layout.VALIDATION_REPORT), report)  # as the code before the upgrade wrote it
    with pytest.raises(validate.BadBatchError, match="by code before an upgrade, did not find") as err:
        split.run(second)
    assert "froze after" not in str(err.value) and "Trigger a new run" in str(err.value)


@pytest.mark.parametrize("one, other, same, why", [
    ("Don't click Save.", "Don’t click “Save”", True, "quotes and the full stop are punctuation"),
    ("กินข้าว", "กันข้าว", False, "Thai vowel signs are letters: 'eat rice' is not 'together rice'"),
    ("मैं किताब पढ़ता हूँ", "में कताब पढता हू", False, "Devanagari vowel signs and nukta are letters"),
    ("كَتَبَ", "كُتُب", False, "Arabic harakat are part of the word: 'he wrote' is not 'books'"),
    ("அவன் கடை", "அவன் கடு", False, "Tamil vowel signs"),
    ("e\u0301te\u0301 !", "été", True, "a combining accent is its letter's, as NFKC composes it"),
    ("... ", "→", False, "a text of punctuation alone keeps it"),
    ("Open the set\u00adtings menu", "Open the settings menu", True, "a soft hyphen (&shy;) is invisible"),
    ("Open the set\u200btings menu", "Open the settings menu", True, "so is a zero-width space"),
    ("\ufeffOpen the settings menu", "Open the settings menu", True, "and a byte-order mark"),
    ("می\u200cخواهم", "میخواهم", False, "ZWNJ tells Persian words apart"),
    # Chinese and Japanese style guides differ on spaces beside Latin words and digits: a frozen test sentence
    # came back for training with them.
    ("已删除 3 个文件，请重新启动 Firefox 浏览器。", "已删除3个文件，请重新启动Firefox浏览器", True, "spaces beside Han"),
    ("你好，世界", "你好世界", True, "a comma read as a space"),
    ("ファイル を 開く", "ファイルを開く", True, "kana"),
    ("กินข้าว แล้ว", "กินข้าวแล้ว", True, "Thai is written without spaces between words"),
    ("파일 열기", "파일열기", False, "Korean is written with spaces between words"),
    ("open file 3", "open file3", False, "Latin words and digits keep their spaces"),
])
def test_the_source_key_reads_punctuation_as_spaces_and_marks_as_letters(one, other, same, why):
    assert (textnorm.source_key(one) == textnorm.source_key(other)) is same, why
    assert (split.assign(one, 0.5, 0.2) == split.assign(other, 0.5, 0.2)) or not same, why


def test_every_combining_mark_is_read_as_a_letter():
    """The class is built from planes 0, 1 and 14 only: no mark lies elsewhere in this Python's Unicode."""
    import sys
    import unicodedata

    marks = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c))[0] == "M"]
    assert marks and [m for m in marks if textnorm.source_form(f"a{m}b") != textnorm.match_key(f"a{m}b")] == []
    assert textnorm.source_form("a!\u00bfb\u2192c") == "a b c"


def test_every_invisible_format_character_is_dropped_from_the_keys():
    """Soft hyphens and zero-width spaces in a test sentence hid it from the leakage check: `source_form` read
    them as spaces ("set tings"), `match_key` kept them. The table is built from planes 0, 1 and 14 only."""
    import sys
    import unicodedata

    kept = {"\u200c", "\u200d"}
    formats = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"]
    assert formats and [f for f in formats if f not in kept and textnorm.match_key(f"a{f}b") != "ab"] == []
    assert [f for f in kept if textnorm.match_key(f"a{f}b") == "ab"] == []


def test_text_whose_only_unprintable_characters_are_no_break_spaces_skips_the_invisible_characters(monkeypatch):
    """French typography puts a no-break space before ? ! : and ;. It is not printable, so every such sentence
    took the per-character translation (5 µs a side, on a million pairs); NFKC reads it as a space first."""
    looked_up = []

    class Table(dict):
        def __getitem__(self, code):
            looked_up.append(code)
            return super().__getitem__(code)

    monkeypatch.setattr(textnorm, "_INVISIBLE", Table(textnorm._INVISIBLE))
    assert textnorm.match_key("Voulez-vous\u00a0vraiment le supprimer\u202f?") == "voulez-vous vraiment le supprimer ?"
    assert looked_up == []
    assert textnorm.match_key("Open the set\u00adtings\u00a0menu") == "open the settings menu" and looked_up
    assert textnorm.match_key("e\u00ad\u0301te\u0301") == "été"  # the soft hyphen goes before NFKC composes


@pytest.mark.parametrize("bucket, frozen, expected, why", [
    (0.05, False, "test", "the test range, before a test set exists"),
    (0.05, True, "train", "the test range feeds training once the test set is frozen"),
    (0.12, False, "validation", "the validation range"),
    (0.12, True, "validation", "validation stays where it was"),
    (0.5, False, "train", "the rest"),
])
def test_assign_bucket(bucket, frozen, expected, why):
    assert split.assign_bucket(bucket, 0.1, 0.05, frozen) == expected, why


def test_shares_follow_the_fractions():
    counts = Counter(split.assign(f"sentence {i}", 0.1, 0.05) for i in range(20000))
    assert abs(counts["test"] / 20000 - 0.10) < 0.01
    assert abs(counts["validation"] / 20000 - 0.05) < 0.01


def _validated_run(tmp_path, run_id, pairs, **params):
    params = {"min_clean_pairs": 1, "min_test_pairs": 5, "test_fraction": 0.2, "validation_fraction": 0.2,
              **params}
    cfg = make_run(tmp_path / "artifacts", run_id=run_id, **params)
    put_raw(cfg, write_jsonl(tmp_path / f"{run_id}.jsonl", pairs))
    validate.run(cfg)
    return cfg


def test_the_first_run_freezes_the_test_set_and_later_runs_reuse_it(tmp_path):
    first = _validated_run(tmp_path, "run-1", _pairs(200))
    report = split.run(first)
    assert report["frozen_test_set"]["reused"] is False and report["frozen_test_set"]["frozen_by"] == "run-1"
    frozen = _split_lines(first, "test")
    assert len(frozen) == report["counts"]["test"] == testset.metadata(first)["pairs"]
    seen = sum((_split_lines(first, name) for name in split.SPLITS), [])
    assert sorted(_sources(seen)) == sorted(p[0] for p in _pairs(200))  # a partition of clean.jsonl

    # Week 2: new sentences, and some that are in the frozen test set again (upper-cased).
    again = [(r["translation"]["en"].upper(), r["translation"]["de"]) for r in frozen[:5]]
    second = _validated_run(tmp_path, "run-2", _pairs(200, start=1000) + again)
    report2 = split.run(second)
    assert report2["frozen_test_set"]["reused"] is True and report2["frozen_test_set"]["frozen_by"] == "run-1"
    assert _split_lines(second, "test") == frozen  # the same sentences, byte for byte
    new_sources = _sources(_split_lines(second, "train") + _split_lines(second, "validation"))
    assert len(new_sources) == 200 and not new_sources & _sources(frozen)  # new data feeds train/validation only
    report, _, rejects = accounted(second)
    assert report["leakage"] == 5 and {r["reasons"][0]["reason"] for r in rejects} == {"leakage"}
    assert split.run(second) == report2  # a retry returns the stored result


def test_a_retry_after_the_first_run_froze_its_test_set_splits_as_the_first_attempt_did(tmp_path, monkeypatch):
    """An attempt that froze the test set and then failed (a reset connection, a killed worker): its retry must not
    take the set for an earlier run's and send every one of its sentences to train."""
    cfg = _validated_run(tmp_path, "run-1", _pairs(200))
    upload = storage.upload_file

    def reset_once(local, uri, *args, **kwargs):
        if uri.endswith("train.jsonl") and not reset_once.done:
            reset_once.done = True
            raise ConnectionResetError("connection reset by peer")
        return upload(local, uri, *args, **kwargs)

    reset_once.done = False
    monkeypatch.setattr(storage, "upload_file", reset_once)
    with pytest.raises(ConnectionResetError):
        split.run(cfg)
    assert testset.is_frozen(cfg) and not storage.exists(cfg.uri(layout.SPLIT_REPORT))
    frozen = [json.loads(line) for line in storage.read_text(cfg.state_uri(layout.TEST_SET)).splitlines()]
    report = split.run(cfg)
    assert _split_lines(cfg, "test") == frozen and report["counts"]["test"] == len(frozen)
    assert not _sources(_split_lines(cfg, "train") + _split_lines(cfg, "validation")) & _sources(frozen)
    assert report["frozen_test_set"]["frozen_by"] == "run-1"


def test_a_run_validated_before_another_froze_the_test_set_is_refused_not_trained_on_it(tmp_path):
    """Two first runs at once (a backfill beside the scheduled run): the second validated before the first froze
    the set, so its validation could not remove the set's sentences as leakage."""
    first = _validated_run(tmp_path, "run-1", _pairs(200))
    second = _validated_run(tmp_path, "run-2", _pairs(200))
    split.run(first)
    with pytest.raises(validate.BadBatchError, match=r"clean.jsonl holds \d+ sentences of the frozen test set .*"
                                                     r"which run run-1 froze after this run's validation"):
        split.run(second)
    assert not storage.exists(second.uri(layout.split_file("train")))


def test_a_batch_validate_judged_unusable_is_not_split_when_its_task_is_marked_success(tmp_path):
    cfg = make_run(tmp_path / "artifacts", min_clean_pairs=500, test_fraction=0.2, validation_fraction=0.2)
    put_raw(cfg, write_jsonl(tmp_path / "batch.jsonl", _pairs(200)))
    with pytest.raises(validate.BadBatchError, match="only 200 usable pairs"):
        validate.run(cfg)
    # Someone marks the failed validate task success in the UI: split runs next, on clean.jsonl all the same.
    with pytest.raises(validate.BadBatchError, match=r"bad batch: only 200 usable pairs .*min_clean_pairs = 500"):
        split.run(cfg)
    assert not testset.is_frozen(cfg) and not storage.exists(cfg.uri(layout.split_file("train")))


def test_a_tampered_frozen_test_set_is_refused(tmp_path):
    first = _validated_run(tmp_path, "run-1", _pairs(100))
    split.run(first)
    storage.write_text(first.state_uri(layout.TEST_SET), "{}\n")
    second = _validated_run_or_error(tmp_path, "run-2", _pairs(100, start=500))
    assert "has SHA-256" in second and "recorded" in second


def _validated_run_or_error(tmp_path, run_id, pairs) -> str:
    with pytest.raises(testset.FrozenTestSetError) as err:
        _validated_run(tmp_path, run_id, pairs)
    return str(err.value)


def test_the_first_run_refuses_to_freeze_a_test_set_below_the_minimum(tmp_path):
    cfg = _validated_run(tmp_path, "run-1", _pairs(30), min_test_pairs=50)
    with pytest.raises(validate.BadBatchError, match=r"pairs hashed into the test split .* min_test_pairs = 50"):
        split.run(cfg)
    assert not testset.is_frozen(cfg)


def test_pipelines_with_other_data_or_languages_keep_their_own_test_sets(tmp_path):
    en_de = make_run(tmp_path, run_id="a", data_uri="s3://bucket/en-de/")
    other_source = make_run(tmp_path, run_id="b", data_uri="s3://bucket/legal/")
    en_fr = make_run(tmp_path, run_id="c", data_uri="s3://bucket/en-de/", target_lang="fr")
    same = make_run(tmp_path, run_id="d", data_uri="s3://bucket/en-de")  # a trailing slash is the same place
    assert len({en_de.state_dir, other_source.state_dir, en_fr.state_dir}) == 3
    assert same.state_dir == en_de.state_dir


def test_the_general_domain_set_is_validated_into_its_own_split(tmp_path):
    general = tmp_path / "general"
    write_tsv(general / "news.tsv", _pairs(40, word="report") + [("", "leer"), ("Hello", "Hello there my friend, how are you?")])
    cfg = _validated_run(tmp_path, "run-1", _pairs(100), general_eval_uri=str(general))
    report = split.run(cfg)["general_test"]
    assert report["pairs"] == 40
    assert report["reasons"] == {"empty": 1, "length_ratio": 1, "wrong_language": 1}  # English "target"
    assert report["accounting"] == "42 rows in = 40 kept + 2 rejected + 0 deduplicated"
    assert len(_split_lines(cfg, layout.GENERAL_TEST)) == 40
    rejects = storage.read_text(cfg.uri(layout.GENERAL_REJECTS)).splitlines()
    assert len(rejects) == 2


def test_domain_data_holding_general_test_sentences_does_not_train_on_them(tmp_path):
    """A careless drop that holds the general-domain test set: training on it would hide forgetting (the check's
    BLEU measured on sentences the candidate learned). Each such row is refused as leakage, naming the set."""
    general_pairs = _pairs(40, word="report")
    write_tsv(tmp_path / "general" / "news.tsv", general_pairs)
    # In the drop with other case and spacing.
    drop = _pairs(200) + [(f"  {s.upper()}", t) for s, t in general_pairs]
    cfg = _validated_run(tmp_path, "run-1", drop, general_eval_uri=str(tmp_path / "general"))
    split.run(cfg)
    trained = _sources(sum((_split_lines(cfg, name) for name in ("train", "validation")), []))
    assert len(trained) + len(_split_lines(cfg, "test")) == 200
    assert not {s.casefold() for s in trained} & {s.casefold() for s, _ in general_pairs}
    report, _, rejects = accounted(cfg)
    assert report["leakage"] == 40
    assert {r["reasons"][0]["detail"] for r in rejects} == {f"source is in {testset.GENERAL_TEST_SET}"}
    assert len(_split_lines(cfg, layout.GENERAL_TEST)) == 40  # the check itself keeps every sentence


def test_an_unusable_general_domain_set_fails_with_its_uri(tmp_path):
    general = tmp_path / "general.tsv"
    general.write_text("en\tfr\nHello\tBonjour\n")
    cfg = _validated_run(tmp_path, "run-1", _pairs(100), general_eval_uri=str(general))
    with pytest.raises(validate.BadBatchError, match=r"general-domain test set .*general.tsv is unusable: "
                                                     r"unreadable file: general.tsv: header names columns"):
        split.run(cfg)
