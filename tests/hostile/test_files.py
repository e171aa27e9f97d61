"""Files that lie about their format, are empty, binary, compressed or broken fail loudly, naming the file; rows
that do not fit are rejected with their own reason, never reshaped; nothing read is lost."""

from __future__ import annotations

import bz2
import gzip
import json

import pytest
import zstandard

from support.corpora import digit_pairs, write_jsonl
from support.runs import accounted, make_run, put_raw
from tasks import layout
from tasks.data import validate
from tasks.io import compression, formats, storage

PAIRS = digit_pairs(30, seed=7)


def _jsonl_bytes(tmp_path) -> bytes:
    return write_jsonl(tmp_path / "plain.jsonl", PAIRS).read_bytes()


def _validate(tmp_path, name: str, data: bytes, **params):
    cfg = make_run(tmp_path / "artifacts", min_clean_pairs=1, max_reject_rate=1.0, **params)
    path = tmp_path / "in" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    put_raw(cfg, path)
    return cfg


def test_a_decompression_bomb_is_refused_before_it_fills_the_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(compression, "MIN_LIMIT", 1 << 20)  # the floor, scaled down for a test
    bomb = gzip.compress(b"\x00" * (40 << 20))  # about 1000:1
    cfg = _validate(tmp_path, "bomb.jsonl.gz", bomb)
    for name in ("good.jsonl.gz", "more.jsonl.gz"):
        (tmp_path / "in" / name).write_bytes(gzip.compress(_jsonl_bytes(tmp_path)))
    put_raw(cfg, *(tmp_path / "in" / name for name in ("bomb.jsonl.gz", "good.jsonl.gz", "more.jsonl.gz")))
    copies_at_each_file = []
    real_plain = formats.plain

    def spy(path, name, scratch):
        copies_at_each_file.append(sorted(p.name for p in scratch.glob("decompressed-*")))
        return real_plain(path, name, scratch)

    monkeypatch.setattr(formats, "plain", spy)
    with pytest.raises(validate.BadBatchError, match="bomb.jsonl.gz"):
        validate.run(cfg)
    report = storage.read_json(cfg.uri(layout.VALIDATION_REPORT))
    assert "refused as a decompression bomb" in report["unreadable_files"]["bomb.jsonl.gz"]
    assert report["files"]["good.jsonl.gz"]["rows"] == 30
    # Each decompressed copy is gone once its file is read: a batch never holds them all on disk at once.
    assert copies_at_each_file == [[], [], []]


@pytest.mark.parametrize("name, compress, compression", [
    ("pairs.jsonl", gzip.compress, "gzip"),  # gzipped but named .jsonl
    ("pairs.jsonl.gz", gzip.compress, "gzip"),
    ("pairs.jsonl.bz2", bz2.compress, "bzip2"),
    ("pairs.jsonl.zst", lambda b: zstandard.ZstdCompressor().compress(b), "zstd"),
])
def test_compressed_files_are_read_decompressed_and_said_so(tmp_path, name, compress, compression):
    cfg = _validate(tmp_path, name, compress(_jsonl_bytes(tmp_path)))
    validate.run(cfg)
    report, clean, _ = accounted(cfg)
    assert report["files"][name]["compression"] == compression
    assert report["files"][name]["format"] == "jsonl" and len(clean) == 30


@pytest.mark.parametrize("name, data, message", [
    ("empty.jsonl", b"", "empty.jsonl: empty file"),
    ("blob.jsonl", bytes(range(256)) * 40, "blob.jsonl: binary content"),
    ("archive.jsonl", b"PK\x03\x04" + b"\x00" * 100, "archive.jsonl: a zip archive"),
    ("broken.jsonl.gz", gzip.compress(b'{"translation": {}}\n' * 50)[:-20], "broken.jsonl.gz: gzip-compressed, but"),
    ("header.po", b'msgid ""\nmsgstr ""\n"Language de\\n"\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
                  b'msgid "Cannot open file"\nmsgstr "Datei kann nicht ge\xc3\xb6ffnet werden"\n',
     "header.po: the catalog header cannot be parsed"),
])
def test_broken_files_fail_the_batch_naming_the_file(tmp_path, name, data, message):
    cfg = _validate(tmp_path, name, data)
    with pytest.raises(validate.BadBatchError) as err:
        validate.run(cfg)
    assert message in str(err.value)
    report = storage.read_json(cfg.uri(layout.VALIDATION_REPORT))
    assert name in report["unreadable_files"] and name in report["files"]  # accounted as a file-level error


@pytest.mark.parametrize("tail, detail", [
    ('Quit now","Jetzt beenden"\n', "lines 3–5 read as one record"),  # closed two lines later
    ("Quit now,Jetzt beenden\n", "malformed CSV"),  # never closed
])
def test_a_stray_quote_in_a_csv_does_not_merge_rows_into_one_kept_pair(tmp_path, tail, detail):
    text = 'en,de\nOpen the file,Datei öffnen\n"Save the file,Datei speichern\nClose the window,Fenster schließen\n'
    cfg = _validate(tmp_path, "ui.csv", (text + tail).encode())
    validate.run(cfg)
    report, clean, rejects = accounted(cfg)
    assert [r["translation"]["en"] for r in clean] == ["Open the file"]
    (merged,) = rejects
    assert merged["line"] == 3 and detail in merged["reasons"][0]["detail"]


def test_a_translation_that_spans_lines_on_both_sides_is_kept_whole(tmp_path):
    text = ('en,de\n"Line one\nSecond line, with comma","Zeile eins\nZweite Zeile, mit Komma"\n'
            'Open the file,Datei öffnen\n')
    cfg = _validate(tmp_path, "ui.csv", text.encode())
    validate.run(cfg)
    _, clean, rejects = accounted(cfg)
    assert rejects == []
    # Kept as one pair (text normalization then folds its line break into a space).
    assert [r["translation"]["de"] for r in clean] == ["Zeile eins Zweite Zeile, mit Komma", "Datei öffnen"]


def test_rows_with_more_columns_than_the_header_are_rejected_not_cut(tmp_path):
    text = "en\tde\nOpen the file\tDatei öffnen\nSave\tSpeichern\tSichern\n"
    cfg = _validate(tmp_path, "ui.tsv", text.encode())
    validate.run(cfg)
    _, clean, rejects = accounted(cfg)
    assert [r["translation"]["de"] for r in clean] == ["Datei öffnen"]
    assert rejects[0]["reasons"][0]["detail"] == "3 column(s), expected 2"


def test_report_examples_are_truncated_but_rejects_keep_the_row(tmp_path):
    huge = "word " * 100_000
    cfg = _validate(tmp_path, "a.jsonl", write_jsonl(tmp_path / "h.jsonl", PAIRS + [(huge, "Wort")]).read_bytes())
    validate.run(cfg)
    report, _, rejects = accounted(cfg)
    example = report["reasons"]["too_long"]["examples"][0]
    assert len(example["source"]) < 300 and "more characters" in example["source"]
    assert len(storage.read_bytes(cfg.uri(layout.VALIDATION_REPORT))) < 20_000
    assert any(len(r["source"]) == len(huge.strip()) for r in rejects)


def test_a_batch_with_no_usable_pair_names_its_files(tmp_path):
    cfg = _validate(tmp_path, "a.jsonl", json.dumps({"translation": {"en": "", "de": ""}}).encode() + b"\n")
    with pytest.raises(validate.BadBatchError) as err:
        validate.run(cfg)
    assert "only 0 usable pairs" in str(err.value) and "a.jsonl (0 kept of 1 rows, 1 rejected)" in str(err.value)


@pytest.mark.parametrize("bom, codec", [(b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")])
def test_utf16_json_lines_named_csv_are_read_as_json_lines_not_cut_at_commas(tmp_path, bom, codec):
    """Content decides over a .csv name for UTF-8 JSON Lines; UTF-16 ones were sniffed as raw bytes, had no `{`
    where a line starts, and were read as CSV: each object cut at its comma and kept as a pair of JSON garbage."""
    cfg = _validate(tmp_path, "export.csv", bom + _jsonl_bytes(tmp_path).decode().encode(codec))
    validate.run(cfg)
    report, clean, _ = accounted(cfg)
    assert report["files"]["export.csv"]["format"] == "jsonl"
    assert [(r["translation"]["en"], r["translation"]["de"]) for r in clean] == PAIRS


@pytest.mark.parametrize("name, text", [
    ("mac.tsv", "".join(f"{s}\t{t}\r" for s, t in PAIRS)),
    ("mac.jsonl", "".join(json.dumps({"translation": {"en": s, "de": t}}) + "\r" for s, t in PAIRS)),
])
def test_lines_ending_in_cr_alone_are_lines(tmp_path, name, text):
    """A classic Mac export ends its lines in CR: read by LF it was one line, one rejected row for the file's 30
    pairs, and beside other files the batch passed without them."""
    cfg = _validate(tmp_path, name, text.encode())
    validate.run(cfg)
    report, clean, rejects = accounted(cfg)
    assert report["files"][name]["rows"] == 30 and len(clean) == 30 and rejects == []
    assert [r["line"] for r in clean] == list(range(1, 31))


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lambda b: zstandard.ZstdCompressor().compress(b),
                                      lambda b: zstandard.ZstdCompressor(write_content_size=False).compress(b)])
def test_a_truncated_compressed_file_is_refused_not_read_as_a_shorter_corpus(tmp_path, compress):
    # A half-finished upload: read as far as it goes, it lost most of its rows without a word, and its last row,
    # cut mid-sentence, was a pair with half a target.
    text = "".join(f"Sentence number {n} is here\tSatz Nummer {n} ist hier\n" for n in range(20000)).encode()
    packed = compress(text)
    cfg = _validate(tmp_path, "export.tsv.zst", packed[:len(packed) * 2 // 3])
    with pytest.raises(validate.BadBatchError, match="export.tsv.zst"):
        validate.run(cfg)
    report = storage.read_json(cfg.uri(layout.VALIDATION_REPORT))
    assert "cannot be decompressed" in report["unreadable_files"]["export.tsv.zst"]
    assert report["kept"] == 0


@pytest.mark.parametrize("export", [
    lambda pairs: json.dumps([{"en": s, "de": t} for s, t in pairs]),  # pandas to_json(orient="records")
    lambda pairs: json.dumps({"data": [{"translation": {"en": s, "de": t}} for s, t in pairs]}),
])
def test_a_whole_json_export_on_one_line_fails_the_file_not_one_row(tmp_path, export):
    # Read as JSON Lines, the export was one rejected row: next to a file of good rows the reject rate stayed
    # low, the run passed, and the object was consumed with all its pairs lost.
    data = tmp_path / "in"
    write_jsonl(data / "week.jsonl", PAIRS)
    (data / "export.json").write_text(export(digit_pairs(500, seed=9)), encoding="utf-8")
    cfg = make_run(tmp_path / "artifacts", min_clean_pairs=1)
    put_raw(cfg, data / "week.jsonl", data / "export.json")
    with pytest.raises(validate.BadBatchError, match="export.json: line 1 holds a JSON .* of many records"):
        validate.run(cfg)
    report = storage.read_json(cfg.uri(layout.VALIDATION_REPORT))
    assert "export.json" in report["unreadable_files"] and report["files"]["week.jsonl"]["kept"] == len(PAIRS)


def test_tsv_cells_quoted_as_csv_writers_quote_them_are_read_unquoted(tmp_path):
    # pandas' to_csv(sep="\t") and spreadsheets wrap a cell that holds a quote in quotes and double its own: kept as
    # read, the pair taught the model to write `""`. A cell merely in quotes stays as it is: it may be speech.
    text = ('en\tde\n"She said ""open"" twice"\t"Sie sagte zweimal ""öffnen"""\n'
            '"Open the file"\t"Öffne die Datei"\n')
    cfg = _validate(tmp_path, "export.tsv", text.encode())
    validate.run(cfg)
    _, clean, rejects = accounted(cfg)
    assert rejects == []
    assert [(r["translation"]["en"], r["translation"]["de"]) for r in clean] == [
        ('She said "open" twice', 'Sie sagte zweimal "öffnen"'), ('"Open the file"', '"Öffne die Datei"')]


def test_a_record_with_list_fields_but_no_pair_is_one_rejected_row_not_a_whole_export(tmp_path):
    # Only arrays of records fail the file: a record whose other fields hold lists of objects is one bad row.
    data = tmp_path / "in"
    write_jsonl(data / "week.jsonl", PAIRS)
    with (data / "week.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"text": "Open it", "tags": [{"name": "ui"}]}) + "\n")
    cfg = make_run(tmp_path / "artifacts", min_clean_pairs=1, max_reject_rate=1.0)
    put_raw(cfg, data / "week.jsonl")
    validate.run(cfg)
    report, clean, rejects = accounted(cfg)
    assert len(clean) == len(PAIRS) and [r["reasons"][0]["reason"] for r in rejects] == ["unreadable_row"]
    assert 'no "translation" object' in rejects[0]["reasons"][0]["detail"]


def test_one_record_in_brackets_is_read_as_that_record_not_a_refused_batch(tmp_path):
    # A stray `[{...}]` line (one record, wrapped by hand or by a tool, or a one-row `to_json(orient='records')`)
    # was taken for a whole export on one line: the file unreadable, so the week's batch failed, for one pair.
    data = tmp_path / "in"
    write_jsonl(data / "week.jsonl", PAIRS)
    with (data / "week.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps([{"translation": {"en": "Close the window now", "de": "Schließe jetzt das Fenster"}}])
                 + "\n")
    (data / "one.json").write_text(json.dumps([{"en": "Open the file now", "de": "Öffne jetzt die Datei"}]))
    cfg = make_run(tmp_path / "artifacts", min_clean_pairs=1, max_reject_rate=1.0)
    put_raw(cfg, data / "week.jsonl", data / "one.json")
    validate.run(cfg)
    report, clean, rejects = accounted(cfg)
    assert report["unreadable_files"] == {} and rejects == []
    assert {"Close the window now", "Open the file now"} <= {r["translation"]["en"] for r in clean}
