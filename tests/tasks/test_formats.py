import json

import pytest

from tasks import formats


def _rows(path, src="en", tgt="de"):
    return list(formats.read_rows(path, path.name, src, tgt))


def test_jsonl_rows_keep_their_line_numbers_and_problems(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"\n".join([
        json.dumps({"translation": {"en": "Hello", "de": "Hallo"}}).encode(),
        b"",
        b"{broken",
        json.dumps({"translation": {"en": "only english"}}).encode(),
        json.dumps(["not", "an", "object"]).encode(),
        "caf\xe9".encode("latin-1"),
    ]) + b"\n")
    rows = _rows(path)
    assert [(r.line, r.source, r.problem) for r in rows] == [
        (1, "Hello", None),
        (2, None, "blank line"),
        (3, None, "invalid JSON: Expecting property name enclosed in double quotes at column 2"),
        (4, None, "no de text in translation"),
        (5, None, 'no "translation" object'),
        (6, None, "not valid UTF-8 at byte 3"),
    ]


@pytest.mark.parametrize("header, cells", [
    ("en\tde", "Hello\tHallo"),
    ("de\ten", "Hallo\tHello"),  # columns picked by name, not position
    ("id\tde\ten", "7\tHallo\tHello"),
])
def test_tsv_header_picks_columns_by_language(tmp_path, header, cells):
    path = tmp_path / "a.tsv"
    path.write_text(f"{header}\n{cells}\n")
    (row,) = _rows(path)
    assert (row.line, row.source, row.target) == (2, "Hello", "Hallo")


def test_tsv_without_header_is_positional_and_short_rows_are_reported(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_text('Yes\tJa\nsay "hi"\tsag „hi“\nonly one column\n')
    rows = _rows(path)
    assert [(r.line, r.source, r.target, r.problem) for r in rows] == [
        (1, "Yes", "Ja", None),
        (2, 'say "hi"', "sag „hi“", None),
        (3, None, None, "1 column(s), expected at least 2"),
    ]


def test_tsv_header_for_another_pair_makes_the_file_unreadable(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_text("en\tfr\nHello\tBonjour\n")
    with pytest.raises(formats.UnreadableFile, match=r"a.tsv: header names columns \['en', 'fr'\]"):
        _rows(path)


def test_unknown_extension_is_unreadable(tmp_path):
    with pytest.raises(formats.UnreadableFile, match="x.docx: unsupported format '.docx'"):
        formats.reader_for("x.docx")
