import json

import pytest

from support.corpora import write_jsonl, write_tsv
from support.runs import make_run
from tasks import pull, storage, validate


@pytest.mark.parametrize("src, tgt, reasons", [
    ("The file was saved.", "Die Datei wurde gespeichert.", []),
    ("", "Hallo", ["empty"]),
    ("Hello", "", ["empty"]),
    ("x" * 1001, "y" * 1001, ["too_long"]),
    ("Open the file in the editor now.", "Öffnen", ["length_ratio"]),
    ("OK", "In Ordnung", []),  # short pairs may differ a lot in length
    ("Linux", "Linux", ["identical"]),
    ("42", "42", []),  # numbers alone are legitimately identical
    ("x" * 1001, "", ["empty", "too_long"]),  # every reason is reported, not only the first
])
def test_pair_filters(tmp_path, src, tgt, reasons):
    cfg = make_run(tmp_path)
    assert [r["reason"] for r in validate.reasons_for(src, tgt, cfg)] == reasons


def _pulled(cfg, files: dict):
    for name, writer in files.items():
        writer(cfg.run_dir + f"/{pull.RAW}/{name}")


def test_every_row_is_kept_rejected_or_deduplicated(tmp_path):
    cfg = make_run(tmp_path, min_clean_pairs=2)
    raw = tmp_path / "raw"
    good = [(f"sentence number {i}", f"Satz Nummer {i}") for i in range(5)]
    write_jsonl(raw / "a.jsonl", good + [("", "leer"), good[0]])
    write_tsv(raw / "b.tsv", [good[1], ("Linux", "Linux"), ("  sentence   number 2 ", "Satz Nummer 2")])
    (raw / "a.jsonl").open("a").write("{not json\n")
    for path in raw.iterdir():
        storage.upload_file(path, cfg.uri(pull.RAW, path.name))

    summary = validate.run(cfg)
    report = storage.read_json(cfg.uri(validate.REPORT))
    assert summary == {"rows_in": 11, "kept": 5, "rejected": 3, "deduplicated": 3}
    assert report["accounting"] == "11 rows in = 5 kept + 3 rejected + 3 deduplicated"
    assert report["files"]["b.tsv"] == {"rows": 3, "kept": 0, "rejected": 1, "deduplicated": 2}
    clean = storage.read_text(cfg.uri(validate.CLEAN)).splitlines()
    rejects = [json.loads(line) for line in storage.read_text(cfg.uri(validate.REJECTS)).splitlines()]
    assert len(clean) + len(rejects) == report["rows_in"]
    by_place = {(r["file"], r["line"]): [x["reason"] for x in r["reasons"]] for r in rejects}
    assert by_place == {("a.jsonl", 6): ["empty"], ("a.jsonl", 7): ["duplicate"],
                        ("a.jsonl", 8): ["unreadable_row"], ("b.tsv", 2): ["duplicate"],
                        ("b.tsv", 3): ["identical"], ("b.tsv", 4): ["duplicate"]}
    assert report["reasons"]["empty"]["examples"][0]["line"] == 6


def test_too_little_usable_data_fails_with_counts_threshold_and_files(tmp_path):
    cfg = make_run(tmp_path, min_clean_pairs=10)
    write_jsonl(tmp_path / "a.jsonl", [("one", "eins"), ("", "zwei")])
    storage.upload_file(tmp_path / "a.jsonl", cfg.uri(pull.RAW, "a.jsonl"))
    with pytest.raises(validate.BadBatchError) as err:
        validate.run(cfg)
    message = str(err.value)
    assert "only 1 usable pairs of 2 rows (min_clean_pairs = 10)" in message
    assert "a.jsonl (1/2 rejected)" in message and "rejects.jsonl" in message
    with pytest.raises(validate.BadBatchError):  # a retry reads the stored report and still fails
        validate.run(cfg)


def test_an_unreadable_file_fails_the_batch(tmp_path):
    cfg = make_run(tmp_path, min_clean_pairs=1)
    write_jsonl(tmp_path / "a.jsonl", [("one", "eins")])
    (tmp_path / "b.tsv").write_text("en\tfr\nHello\tBonjour\n")
    for name in ("a.jsonl", "b.tsv"):
        storage.upload_file(tmp_path / name, cfg.uri(pull.RAW, name))
    with pytest.raises(validate.BadBatchError, match=r"unreadable file\(s\): b.tsv: header names"):
        validate.run(cfg)
