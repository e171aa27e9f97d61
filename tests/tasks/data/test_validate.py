import json
import subprocess
from pathlib import Path

import pytest

from support.corpora import write_csv, write_jsonl, write_mo, write_parquet, write_po, write_tmx, write_tsv
from support.runs import REPO_ROOT, accounted, cli, cli_env, make_run, put_raw
from tasks.data import split, testset, validate

GOOD = [(f"The printer number {i} is ready now.", f"Der Drucker Nummer {i} ist jetzt bereit.") for i in range(30)]
BAD = [
    ("", "leer"),  # empty
    ("Cannot open %s", "Kann nicht öffnen"),  # placeholders
    ("Linux kernel panic", "Linux kernel panic"),  # identical
    ("Wait 5 seconds", "Warte 10 Sekunden"),  # numerals
]
DUPLICATES = [GOOD[0], (GOOD[1][0].upper(), GOOD[1][1])]  # exact, and after case folding


def test_every_row_is_kept_rejected_or_deduplicated(tmp_path):
    cfg = make_run(tmp_path, min_clean_pairs=2)
    good = [(f"sentence number {i}", f"Satz Nummer {i}") for i in range(5)]
    raw = tmp_path / "raw"
    write_jsonl(raw / "a.jsonl", good + [("", "leer"), good[0]])
    write_tsv(raw / "b.tsv", [good[1], ("Linux kernel", "Linux kernel"), ("  sentence   number 2 ", "Satz Nummer 2")])
    with (raw / "a.jsonl").open("a") as fh:
        fh.write("{not json\n")
    put_raw(cfg, *raw.iterdir())

    summary = validate.run(cfg)
    report, clean, rejects = accounted(cfg)
    assert summary == {"rows_in": 11, "kept": 5, "rejected": 3, "deduplicated": 3, "carried_kept": 0,
                       "clean_pairs": 5}
    assert report["accounting"] == "11 rows in = 5 kept + 3 rejected + 3 deduplicated"
    assert report["files"]["b.tsv"] == {"rows": 3, "kept": 0, "rejected": 1, "deduplicated": 2, "format": "tsv",
                                        "detected_by": "content and extension .tsv agree"}
    by_place = {(r["file"], r["line"]): [x["reason"] for x in r["reasons"]] for r in rejects}
    assert by_place == {("a.jsonl", 6): ["empty"], ("a.jsonl", 7): ["duplicate"],
                        ("a.jsonl", 8): ["unreadable_row"], ("b.tsv", 2): ["duplicate"],
                        ("b.tsv", 3): ["identical"], ("b.tsv", 4): ["duplicate"]}
    assert report["reasons"]["empty"]["examples"][0]["line"] == 6
    assert clean[0] == {"translation": {"en": "sentence number 0", "de": "Satz Nummer 0"}, "file": "a.jsonl",
                        "line": 1}


@pytest.mark.parametrize("name, writer", [
    ("batch.jsonl", write_jsonl), ("batch.tsv", write_tsv), ("batch.csv", write_csv), ("batch.tmx", write_tmx),
    ("batch.po", write_po), ("batch.mo", write_mo), ("batch.parquet", write_parquet),
])
def test_each_format_is_validated_with_every_row_accounted_for(tmp_path, name, writer):
    cfg = make_run(tmp_path, min_clean_pairs=10)
    put_raw(cfg, writer(tmp_path / name, GOOD + BAD + DUPLICATES))
    validate.run(cfg)
    report, clean, rejects = accounted(cfg)
    reasons = sorted(x["reason"] for r in rejects for x in r["reasons"])
    assert reasons == ["duplicate", "duplicate", "empty", "identical", "numerals", "placeholders"]
    assert report["rows_in"] == len(GOOD + BAD + DUPLICATES)
    assert report["kept"] == len(GOOD) and report["files"][name]["format"] == Path(name).suffix[1:]


def test_exact_and_normalized_duplicates_say_which_and_where(tmp_path):
    cfg = make_run(tmp_path, min_clean_pairs=1)
    put_raw(cfg, write_jsonl(tmp_path / "a.jsonl", [GOOD[0], GOOD[0], (f"  {GOOD[0][0].upper()} ", GOOD[0][1])]))
    validate.run(cfg)
    _, _, rejects = accounted(cfg)
    assert [r["reasons"][0]["detail"] for r in rejects] == [
        "same pair as a.jsonl:1", "same pair as a.jsonl:1 after normalization (case, spacing, Unicode forms)"]


def test_the_report_gives_examples_lengths_and_thresholds(tmp_path):
    cfg = make_run(tmp_path, min_clean_pairs=1)
    put_raw(cfg, write_jsonl(tmp_path / "a.jsonl", GOOD + [("", f"leer {i}") for i in range(5)]))
    validate.run(cfg)
    report, _, _ = accounted(cfg)
    assert report["reasons"]["empty"]["count"] == 5
    assert len(report["reasons"]["empty"]["examples"]) == validate.EXAMPLES_PER_REASON
    lengths = report["kept_lengths"]["source_chars"]
    assert lengths["min"] == len(GOOD[0][0]) and lengths["max"] == len(GOOD[-1][0])
    assert report["kept_lengths"]["source_words"]["median"] == 7
    assert report["thresholds"] == {"min_clean_pairs": 1, "max_reject_rate": 0.5, "skip_filters": [],
                                    "alignment_screen": False, "alignment_min_margin": None,
                                    "max_misaligned_rate": 0.2}
    assert report["alignment"] == {"skipped": "alignment_screen is off"}
    assert report["language_id_unknown"] == []


def test_a_language_the_model_does_not_know_is_reported_not_guessed(tmp_path):
    cfg = make_run(tmp_path, min_clean_pairs=1, target_lang="tlh")  # Klingon is not among lid.176's labels
    put_raw(cfg, write_jsonl(tmp_path / "a.jsonl", [("The printer is ready and waiting.", "The printer is ready now.")],
                             tgt="tlh"))
    validate.run(cfg)
    report, clean, _ = accounted(cfg)
    assert report["language_id_unknown"] == ["tlh"] and len(clean) == 1


def test_too_little_usable_data_fails_with_counts_threshold_and_files(tmp_path):
    cfg = make_run(tmp_path, min_clean_pairs=10)
    put_raw(cfg, write_jsonl(tmp_path / "a.jsonl", [("one", "eins"), ("", "zwei")]))
    with pytest.raises(validate.BadBatchError) as err:
        validate.run(cfg)
    message = str(err.value)
    assert "only 1 usable pairs from 2 new rows (min_clean_pairs = 10)" in message
    assert "a.jsonl (1 kept of 2 rows, 1 rejected)" in message and "rejects.jsonl" in message
    with pytest.raises(validate.BadBatchError):  # a retry reads the stored report and still fails
        validate.run(cfg)


def test_a_reject_rate_above_the_ceiling_fails_and_names_the_worst_file(tmp_path):
    cfg = make_run(tmp_path, min_clean_pairs=1, max_reject_rate=0.2)
    put_raw(cfg, write_jsonl(tmp_path / "good.jsonl", GOOD[:20]),
            write_jsonl(tmp_path / "bad.jsonl", [("", f"leer {i}") for i in range(10)]))
    with pytest.raises(validate.BadBatchError) as err:
        validate.run(cfg)
    assert "reject rate 33.3% > max_reject_rate 20.0% (10 of 30 rows rejected)" in str(err.value)
    assert "Files: bad.jsonl (0 kept of 10 rows, 10 rejected), good.jsonl (20 kept of 20 rows, 0 rejected)" \
        in str(err.value)
    report, _, _ = accounted(cfg)
    assert report["files_at_fault"][0] == "bad.jsonl (0 kept of 10 rows, 10 rejected)"


@pytest.mark.parametrize("name, content, message", [
    ("b.tsv", "en\tfr\nHello\tBonjour\n", r"unreadable file: b.tsv: header names columns"),
    ("b.tmx", '<?xml version="1.0"?><tmx><body><tu><tuv xml:lang="en"><seg>Hi', r"unreadable file: b.tmx: broken TMX"),
    ("b.po", 'msgid ""\nmsgstr ""\n"Language: fr\\n"\n\nmsgid "a"\nmsgstr "b"\n', r"b.po: catalog is for language 'fr'"),
])
def test_an_unreadable_file_fails_the_batch_and_is_named(tmp_path, name, content, message):
    cfg = make_run(tmp_path, min_clean_pairs=1)
    (tmp_path / name).write_text(content)
    put_raw(cfg, write_jsonl(tmp_path / "a.jsonl", GOOD), tmp_path / name)
    with pytest.raises(validate.BadBatchError, match=message) as err:
        validate.run(cfg)
    assert f"Files: {name}" in str(err.value)
    report, _, _ = accounted(cfg)  # the rows read before a break are still accounted for
    assert report["unreadable_files"].keys() == {name}


def test_a_non_utf8_file_is_rejected_row_by_row_with_the_reason(tmp_path):
    cfg = make_run(tmp_path, min_clean_pairs=1)
    path = tmp_path / "latin1.tsv"
    path.write_bytes("en\tde\nThe street is long today.\tDie Straße ist heute lang.\nYes\tJa\n".encode("latin-1"))
    put_raw(cfg, path, write_jsonl(tmp_path / "a.jsonl", GOOD))
    validate.run(cfg)
    _, clean, rejects = accounted(cfg)
    assert [(r["line"], r["reasons"][0]["reason"], r["target"]) for r in rejects] == [
        (2, "encoding", "Die Stra\ufffde ist heute lang.")]
    assert {"en": "Yes", "de": "Ja"} in [c["translation"] for c in clean]


def test_pairs_whose_source_is_in_the_frozen_test_set_are_leakage(tmp_path):
    first = make_run(tmp_path, run_id="run-1", min_clean_pairs=1, min_test_pairs=1, test_fraction=0.3,
                     validation_fraction=0.3)
    put_raw(first, write_jsonl(tmp_path / "a.jsonl", GOOD))
    validate.run(first)
    frozen = split.run(first)["counts"]["test"]
    assert frozen > 0

    second = make_run(tmp_path, run_id="run-2", min_clean_pairs=1, test_fraction=0.3, validation_fraction=0.3)
    put_raw(second, write_jsonl(tmp_path / "b.jsonl", [(s.upper(), t + "!") for s, t in GOOD]))
    validate.run(second)
    report, clean, rejects = accounted(second)
    assert report["leakage"] == frozen == len(rejects)
    assert {r["reasons"][0]["reason"] for r in rejects} == {"leakage"}
    assert report["reject_rate"] == 0.0  # leakage says nothing about the batch's quality


def test_a_test_sentence_with_a_soft_hyphen_or_a_zero_width_space_is_leakage(tmp_path):
    """Web and CMS exports carry `&shy;` and zero-width spaces: the test sentence with one came back as new data."""
    config = make_run(tmp_path, min_clean_pairs=1, max_reject_rate=1.0)
    testset.freeze(config, write_jsonl(tmp_path / "t.jsonl", [("Open the settings menu now", "Öffne das Menü")]), 1)
    put_raw(config, write_jsonl(tmp_path / "in" / "week.jsonl", [
        ("Open the set\u00adtings menu now", "Öffne das Einstellungs\u00admenü"),
        ("Open the set\u200btings menu now", "Öffne das Menü jetzt"), ("Close the window", "Schließe das Fenster")]))
    validate.run(config)
    report, clean, rejects = accounted(config)
    assert [r["translation"]["en"] for r in clean] == ["Close the window"]
    assert [r["reasons"][0]["reason"] for r in rejects] == ["leakage", "leakage"] and report["leakage"] == 2


def test_worker_processes_give_the_same_outputs_as_one_process(tmp_path, monkeypatch):
    pairs = GOOD + BAD + DUPLICATES + [("Hello world, this is plainly English.", "Hello world, this is also English.")]
    outputs = []
    for workers in ("1", "2"):
        monkeypatch.setenv("MT_VALIDATE_WORKERS", workers)
        cfg = make_run(tmp_path / workers, min_clean_pairs=1)
        put_raw(cfg, write_jsonl(tmp_path / "a.jsonl", pairs * 3), write_tsv(tmp_path / "b.tsv", BAD))
        validate.run(cfg)
        report, clean, rejects = accounted(cfg)
        outputs.append((clean, rejects, {k: v for k, v in report.items() if k != "workers"}))
        assert report["workers"] == int(workers)
    assert outputs[0] == outputs[1]


def test_a_worker_count_that_is_no_number_names_the_variable(monkeypatch):
    from tasks.data import screening

    monkeypatch.setenv("MT_VALIDATE_WORKERS", "all")
    with pytest.raises(ValueError, match="MT_VALIDATE_WORKERS must be a whole number of processes, not 'all'"):
        screening.worker_count(10**9)


def test_the_step_cli_screens_in_worker_processes_too(tmp_path):
    # The training container and the local launcher run `python -m tasks validate`: spawned workers must
    # start from that entry point as well as from pytest's.
    cfg = make_run(tmp_path, min_clean_pairs=1)
    put_raw(cfg, write_jsonl(tmp_path / "a.jsonl", GOOD + BAD))
    done = subprocess.run(cli("validate", cfg.run_dir), env={**cli_env(), "MT_VALIDATE_WORKERS": "2"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"rows_in": 34, "kept": 30, "rejected": 4,
                                                                "deduplicated": 0, "carried_kept": 0,
                                                                "clean_pairs": 30}
    assert accounted(cfg)[0]["workers"] == 2


def test_the_demo_domain_data_stays_usable_with_the_demo_settings(tmp_path):
    cfg = make_run(tmp_path, max_chars=160)
    put_raw(cfg, *sorted((REPO_ROOT / "demo" / "data" / "domain").iterdir()))
    validate.run(cfg)
    report, _, _ = accounted(cfg)
    assert report["rows_in"] == 8566
    assert report["reject_rate"] < 0.12, report["reasons"].keys()
    # The GNU catalogs are careful translations: the data-quality filters fire on a few percent at most.
    quality = ("wrong_language", "placeholders", "numerals", "markup", "control_chars", "encoding")
    assert sum(report["reasons"].get(r, {"count": 0})["count"] for r in quality) < 0.015 * report["rows_in"]
