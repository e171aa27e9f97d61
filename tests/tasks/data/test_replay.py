"""Replay mixing: the share of general-domain pairs in the training mix, sampled reproducibly, never
from evaluation data."""

import pytest

from support.corpora import write_jsonl, write_tsv
from support.runs import make_run, write_splits
from tasks.data import replay
from tasks.io.pairs import read_pairs
from tasks.train import step as train

GENERAL = [(f"general sentence {i}", f"allgemeiner Satz {i}") for i in range(1000)]


def _domain(n):
    return [(f"domain sentence {i}", f"Fachsatz {i}") for i in range(n)]


@pytest.mark.parametrize("domain_pairs, fraction, general_pairs", [
    (800, 0.2, 200),  # one in five of the mix
    (1000, 0.5, 1000),
    (900, 0.1, 100),
    (100, 0.25, 33),  # 33.3: rounded to the nearest pair
    (1000, 0.0, 0),
    (0, 0.3, 0),
    (10, 0.9, 90),
])
def test_replay_count_makes_the_requested_share_of_the_mix(domain_pairs, fraction, general_pairs):
    assert replay.replay_count(domain_pairs, fraction) == general_pairs


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_replay_fraction_outside_zero_to_one_is_refused(fraction):
    with pytest.raises(ValueError, match="replay fraction"):
        replay.replay_count(100, fraction)


@pytest.mark.parametrize("domain, available, fraction, replayed, with_replacement", [
    (800, 1000, 0.2, 200, False),
    (1000, 1000, 0.5, 1000, False),  # exactly all of it: still without replacement
    (900, 60, 0.1, 100, True),  # too few general pairs: repeated, and the report says so
    (500, 1000, 0.0, 0, False),
])
def test_mix_proportions(domain, available, fraction, replayed, with_replacement):
    mixed = replay.mix(_domain(domain), GENERAL[:available], fraction, seed=42)
    report = mixed.report
    assert len(mixed.pairs) == domain + replayed
    assert mixed.pairs[:domain] == _domain(domain)  # every domain pair, once
    assert (report["domain_pairs"], report["general_pairs"]) == (domain, replayed)
    assert report["with_replacement"] is with_replacement
    assert report["fraction_actual"] == pytest.approx(fraction, abs=1 / (domain + replayed + 1))
    general = mixed.pairs[domain:]
    assert set(general) <= set(GENERAL[:available])
    if not with_replacement:
        assert len(set(general)) == len(general)
    else:  # repeated as evenly as possible: no pair twice more often than another
        counts = [general.count(p) for p in set(general)]
        assert max(counts) - min(counts) <= 1 and len(set(general)) == available


def test_the_sample_is_reproducible_and_grows_by_extension():
    first = replay.mix(_domain(100), GENERAL, 0.2, seed=7).pairs[100:]
    assert replay.mix(_domain(100), list(reversed(GENERAL)), 0.2, seed=7).pairs[100:] == first
    assert replay.mix(_domain(100), GENERAL, 0.2, seed=8).pairs[100:] != first
    larger = replay.mix(_domain(200), GENERAL, 0.2, seed=7).pairs[200:]
    assert larger[:len(first)] == first  # more domain data adds general pairs, it does not swap them


def test_held_out_sources_and_duplicates_are_never_replayed():
    general = [("Hello  World", "Hallo Welt"), ("hello world", "hallo Welt"), ("Good morning", "Guten Morgen"),
               ("Thank you", "Danke"), ("Test sentence", "Testsatz")]
    held_out = {replay.source_key("test  SENTENCE")}
    mixed = replay.mix(_domain(3), general, 0.5, seed=1, exclude_sources=held_out)
    assert mixed.report["general_excluded_overlap"] == 1
    assert mixed.report["general_duplicates_dropped"] == 1  # the two spellings of "hello world"
    assert mixed.report["general_available"] == 3
    assert ("Test sentence", "Testsatz") not in mixed.pairs


def test_a_run_replays_from_files_but_never_its_evaluation_sentences(tmp_path):
    general_dir = tmp_path / "general"
    write_jsonl(general_dir / "a.jsonl", GENERAL[:300])
    write_tsv(general_dir / "b.tsv", GENERAL[300:600])
    (general_dir / "notes.txt").write_text("not parallel data\n")
    general_eval = write_jsonl(tmp_path / "general-test.jsonl", GENERAL[:50])
    cfg = make_run(tmp_path / "artifacts", replay_data_uri=str(general_dir), replay_fraction=0.5)
    # The general-domain test set's parameter belongs to the evaluation work; set it as a run would.
    cfg = cfg.model_copy(update={"general_eval_uri": str(general_eval)})
    domain = _domain(400)
    write_splits(cfg, tmp_path, train=domain, validation=[GENERAL[60]], test=[GENERAL[70]])

    path, report = train.training_mix(cfg, tmp_path / "train.jsonl", tmp_path)
    mixed = list(zip(*read_pairs(path, "en", "de")))
    replayed = set(mixed[400:])
    assert report["domain_train_pairs"] == 400 and report["replay"]["general_pairs"] == 400
    assert report["replay"]["general_available"] == 600 - 52 and report["replay"]["uri"] == str(general_dir)
    assert not replayed & set(GENERAL[:50]) and GENERAL[60] not in replayed and GENERAL[70] not in replayed


def test_replay_never_trains_on_a_held_out_sentence_in_another_unicode_form_or_case(tmp_path):
    """Validation and split judge leakage by textnorm.source_form (NFKC, full case folding); replay compared
    sources by NFC and lower() alone, so a general pair whose source was a test sentence written with a ligature,
    in full-width letters, as STRASSE for Straße or in quotes was replayed into training."""
    variants = [("ﬁle not found", "Datei nicht gefunden"), ("Ｏｐｅｎ ｔｈｅ ｍｅｎｕ", "Öffne das Menü"),
                ("GO TO THE MAIN STRASSE", "Geh zur Hauptstraße"), ("“File not found!”", "„Datei fehlt!“")]
    general_dir = tmp_path / "general"
    write_jsonl(general_dir / "a.jsonl", GENERAL[:100] + variants)
    general_eval = write_jsonl(tmp_path / "general-test.jsonl",
                               [("File not found", "Datei fehlt"), ("Go to the main Straße", "Zur Hauptstraße")])
    cfg = make_run(tmp_path / "artifacts", replay_data_uri=str(general_dir), replay_fraction=0.5)
    cfg = cfg.model_copy(update={"general_eval_uri": str(general_eval)})
    write_splits(cfg, tmp_path, train=_domain(400), validation=[GENERAL[60]], test=[("Open the menu", "Menü")])
    path, report = train.training_mix(cfg, tmp_path / "train.jsonl", tmp_path)
    replayed = set(list(zip(*read_pairs(path, "en", "de")))[400:])
    assert replayed and not replayed & set(variants)
    assert report["replay"]["general_excluded_overlap"] == 5  # the four variants and GENERAL[60]


def test_links_in_a_replay_folder_are_skipped_not_followed(tmp_path):
    general_dir = tmp_path / "general"
    write_jsonl(general_dir / "a.jsonl", GENERAL[:30])
    write_jsonl(tmp_path / "elsewhere.jsonl", [("private sentence", "privater Satz")])
    (general_dir / "b.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")
    (general_dir / "c.jsonl").symlink_to(tmp_path / "gone.jsonl")  # broken
    (general_dir / "d.jsonl").symlink_to(tmp_path)  # a folder
    assert replay.read_parallel(str(general_dir), "en", "de") == GENERAL[:30]


def test_replay_without_data_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = make_run(tmp_path / "artifacts", replay_data_uri=str(tmp_path / "empty"), replay_fraction=0.2)
    with pytest.raises(replay.ReplayDataError, match="no readable parallel pairs"):
        replay.for_run(cfg, _domain(10))


def test_a_key_with_an_empty_segment_in_a_replay_prefix_never_lands_outside_scratch(s3, tmp_path):
    # `corpus//opt/airflow/dags/x.py` is listed as `/opt/airflow/dags/x.py`: downloaded as it reads, any file on
    # the worker (a DAG file: code the scheduler runs) is the replay corpus writer's to plant.
    s3.create_bucket(Bucket="general")
    write_jsonl(tmp_path / "ok.jsonl", [("Hello there", "Hallo da")])
    s3.upload_file(str(tmp_path / "ok.jsonl"), "general", "corpus/ok.jsonl")
    target = tmp_path / "dags" / "planted.py"
    s3.put_object(Bucket="general", Key="corpus//" + str(target).lstrip("/"), Body=b"print('planted')\n")
    with pytest.raises(ValueError, match="empty, '.' or '..' segment"):
        replay.read_parallel("s3://general/corpus/", "en", "de")
    assert not target.exists()


def test_replay_origins_name_each_pairs_first_file_and_line_and_cost_little_memory(tmp_path):
    """Replay's general corpus (read like pulled data) keeps where each pair came from for its rejects; a dict by
    pair held ~125 bytes a pair through the step (125 MiB per million general pairs) for the few pairs refused."""
    import tracemalloc

    folder = tmp_path / "general"
    folder.mkdir()
    pairs = [(f"source {i}", f"Ziel {i}") for i in range(20_000)]
    write_tsv(folder / "a.tsv", pairs[:3] + [pairs[0]])
    (folder / "b.tsv").write_text("en\tde\n", encoding="utf-8")  # a header and no pair
    write_tsv(folder / "c.tsv", pairs[3:])
    origins = replay.Origins()
    tracemalloc.start()
    try:
        general = replay.read_parallel(str(folder), "en", "de", origins)
        with_origins = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        plain = replay.read_parallel(str(folder), "en", "de")
        without = tracemalloc.get_traced_memory()[0] - with_origins
    finally:
        tracemalloc.stop()
    assert general == plain == pairs[:3] + [pairs[0]] + pairs[3:]
    assert with_origins - without < 20 * len(general)
    found = origins.of(general, {pairs[0], pairs[2], pairs[3], pairs[-1]})
    a, c = str(folder / "a.tsv"), str(folder / "c.tsv")  # line 1 of each is the header
    assert found == {pairs[0]: (a, 2), pairs[2]: (a, 4), pairs[3]: (c, 2), pairs[-1]: (c, len(pairs) - 2)}
