import json

import pytest

from support.corpora import write_csv, write_jsonl, write_mo, write_parquet, write_po, write_tmx, write_tsv
from tasks.io import formats

PAIRS = [("Hello", "Hallo"), ("Cannot open %s", "%s kann nicht geöffnet werden")]


def _rows(path, src="en", tgt="de"):
    return list(formats.read_rows(path, path.name, src, tgt, path.parent))


def _pairs(rows):
    return [(r.source, r.target) for r in rows]


# --- one test per format: the pair's columns are picked by language, every record is a numbered row

@pytest.mark.parametrize("name, writer, lines, fmt", [
    ("a.jsonl", write_jsonl, [1, 2], "jsonl"),
    ("a.tsv", write_tsv, [2, 3], "tsv"),  # line 1 is the header
    ("a.csv", write_csv, [2, 3], "csv"),
    ("a.tmx", write_tmx, [5, 6], "tmx"),  # the <tu> lines after the XML header
    ("a.po", write_po, [9, 12], "po"),  # the msgid lines after the catalog header
    ("a.mo", write_mo, [1, 2], "mo"),  # MO has no lines: positions in the catalog
    ("a.parquet", write_parquet, [1, 2], "parquet"),
])
def test_each_format_reads_the_pairs_with_their_places(tmp_path, name, writer, lines, fmt):
    path = writer(tmp_path / name, PAIRS)
    assert formats.detect(path, name).format == fmt
    rows = _rows(path)
    assert sorted(_pairs(rows)) == sorted(PAIRS)
    assert sorted(r.line for r in rows) == lines
    assert all(r.problem is None for r in rows)


def test_jsonl_rows_keep_their_line_numbers_and_problems(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"\n".join([
        json.dumps({"translation": {"en": "Hello", "de": "Hallo"}}).encode(),
        b"",
        b"{broken",
        json.dumps({"translation": {"en": "only english"}}).encode(),
        json.dumps(["not", "an", "object"]).encode(),
        '{"translation": {"en": "caf\xe9", "de": "Caf\xe9"}}'.encode("latin-1"),
        json.dumps({"en": "flat", "de": "flach"}).encode(),
    ]) + b"\n")
    rows = _rows(path)
    assert [(r.line, r.source, r.problem) for r in rows] == [
        (1, "Hello", None),
        (2, None, "blank line"),
        (3, None, "invalid JSON: Expecting property name enclosed in double quotes at column 2"),
        (4, None, "no de text in translation"),
        (5, None, 'no "translation" object'),
        (6, "caf\ufffd", None),  # decoded as far as possible; the encoding filter rejects it
        (7, "flat", None),  # a dataset's flat columns
    ]


def test_jsonl_keys_that_are_language_tags_name_the_pair_as_a_tsv_header_does(tmp_path):
    """Translation memories export `en-US`/`de-DE` keys: every row was rejected as 'no "translation" object'."""
    path = tmp_path / "tm.jsonl"
    path.write_text("\n".join(json.dumps(record) for record in [
        {"translation": {"en-US": "Hello", "de-DE": "Hallo"}},
        {"id": 7, "EN_us": "flat", "de_AT": "flach"},
        {"en": "exact names", "de": "genaue Namen", "de-CH": "first wins by name"},
        {"translation": {"en-US": "two", "en-GB": "twice", "de": "zweimal"}},
        {"translation": {"en-US": "only english"}},
        {"fr-FR": "bonjour", "de-DE": "Hallo"},
    ]) + "\n")
    assert [(r.line, r.source, r.target, r.problem) for r in _rows(path)] == [
        (1, "Hello", "Hallo", None),
        (2, "flat", "flach", None),
        (3, "exact names", "genaue Namen", None),
        (4, None, None, "keys 'en-US' and 'en-GB' both name 'en': which text is the pair's is unclear"),
        (5, None, None, "no de text in translation"),
        (6, None, None, 'no "translation" object'),
    ]


@pytest.mark.parametrize("header, cells", [
    ("en\tde", "Hello\tHallo"),
    ("de\ten", "Hallo\tHello"),  # columns picked by name, not position
    ("id\tde-DE\ten_US", "7\tHallo\tHello"),  # region subtags name the language too
    ("source\ttarget", "Hello\tHallo"),  # named by role
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
        (3, None, None, "1 column(s), expected 2"),
    ]


def test_csv_quotes_semicolons_and_multiline_fields_keep_their_start_line(tmp_path):
    path = write_csv(tmp_path / "a.csv", [("Save, then quit", "Speichern, dann beenden"),
                                          ("two\nlines", "zwei\nZeilen"), ("Yes", "Ja")], header=("de", "en"))
    rows = _rows(path)
    # The header says the first column is German: columns are swapped by name.
    assert [(r.line, r.source) for r in rows] == [(2, "Speichern, dann beenden"), (3, "zwei\nZeilen"), (6, "Ja")]
    semicolons = write_csv(tmp_path / "b.csv", [("1,5 l", "1,5 l")], delimiter=";")  # German decimal commas
    assert _pairs(_rows(semicolons)) == [("1,5 l", "1,5 l")]


def test_tmx_picks_language_variants_and_drops_native_codes(tmp_path):
    path = tmp_path / "a.tmx"
    path.write_text("""<?xml version="1.0" encoding="UTF-8"?>
<tmx version="1.4"><header srclang="en" datatype="html" segtype="sentence" adminlang="en" creationtool="x"
 creationtoolversion="1" o-tmf="x"/><body>
<tu><tuv xml:lang="fr"><seg>Bonjour</seg></tuv><tuv xml:lang="de-AT"><seg>Servus <bpt i="1">&lt;b&gt;</bpt>Welt<ept i="1">&lt;/b&gt;</ept></seg></tuv><tuv lang="EN-GB"><seg>Hello <hi>world</hi></seg></tuv></tu>
<tu><tuv xml:lang="en"><seg>Only English</seg></tuv></tu>
</body></tmx>""")
    rows = _rows(path)
    assert [(r.line, r.source, r.target) for r in rows[:1]] == [(4, "Hello world", "Servus Welt")]
    assert rows[1].problem == "<tu> has no de variant (has ['en'])"


def test_po_rows_say_fuzzy_and_obsolete_and_split_plurals(tmp_path):
    path = tmp_path / "a.po"
    path.write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n"Language: de\\n"\n\n'
                    '#, fuzzy\nmsgid "Hello"\nmsgstr "Hallo"\n\n'
                    'msgid "%d file"\nmsgid_plural "%d files"\nmsgstr[0] "%d Datei"\nmsgstr[1] "%d Dateien"\n\n'
                    'msgid "Untranslated"\nmsgstr ""\n\n#~ msgid "Old"\n#~ msgstr "Alt"\n')
    rows = _rows(path)
    assert [(r.line, r.source, r.target, r.reason if r.problem else None) for r in rows] == [
        (6, "Hello", "Hallo", "fuzzy"),  # an entry starts at its comments
        (10, "%d file", "%d Datei", None),
        (10, "%d files", "%d Dateien", None),
        (15, "Untranslated", "", None),  # the empty filter rejects it, with the rest
        (18, None, None, "obsolete"),
    ]


@pytest.mark.parametrize("writer", [write_po, write_mo])
def test_catalogs_read_in_the_other_direction_for_a_reverse_pair(tmp_path, writer):
    path = writer(tmp_path / f"a.{writer.__name__[-2:]}", [("Hello", "Hallo")], language="de")
    assert _pairs(_rows(path, src="de", tgt="en")) == [("Hallo", "Hello")]


def test_parquet_named_columns_and_nulls(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"id": [1, 2], "de": ["Hallo", None], "en": ["Hello", "World"]}), path)
    rows = _rows(path)
    assert [(r.line, r.source, r.target, r.problem) for r in rows] == [
        (1, "Hello", "Hallo", None), (2, None, None, "source str, target NoneType: expected two strings")]


def test_utf16_with_bom_is_decoded(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_bytes("en\tde\nStraße\tstreet\n".encode("utf-16"))
    assert _pairs(_rows(path)) == [("Straße", "street")]


# --- broken files: a clear error that names the file (and the line where the parser knows it), or rows
# --- whose problems say what is wrong; never a library exception without context

def _truncated_tmx(path):
    write_tmx(path, PAIRS * 3)
    path.write_bytes(path.read_bytes()[:-60])


def _garbage(path):
    path.write_bytes(b"\x00\x01garbage" * 20)


@pytest.mark.parametrize("name, make, message", [
    ("a.tmx", _truncated_tmx, r"a.tmx: broken TMX at line 10: .*the rows before it were read"),
    ("a.po", lambda p: p.write_text('msgid ""\nmsgstr ""\n"Language: de\\n"\nmsgstr "x"\n\nmsgid "a"\nmsgstr "b"\n'),
     r"a.po: not a readable PO catalog: Syntax error in po file \(line 4\)"),
    ("a.po", lambda p: p.write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=BOGUS\\n"\n\n'
                                    'msgid "a"\nmsgstr "b"\n'),
     r"a.po: header declares charset 'BOGUS', which is not an encoding"),
    ("a.po", lambda p: write_po(p, PAIRS, language="fr_FR"), r"a.po: catalog is for language 'fr_FR', not 'de'"),
    ("a.po", lambda p: p.write_bytes(b'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
                                     b'msgid "caf\xe9"\nmsgstr "x"\n'),
     r"a.po: not a readable PO catalog: 'utf-8' codec can't decode byte 0xe9"),
    ("a.mo", lambda p: p.write_bytes(write_mo(p, PAIRS).read_bytes()[:30]), r"a.mo: not a readable MO catalog"),
    ("a.mo", _garbage, r"a.mo: binary content \(NUL bytes\)"),
    ("a.csv", lambda p: p.write_text("en\nHello\n"), r"a.csv: header names columns \['en'\], but not both 'en' and 'de'"),
    ("a.tsv", lambda p: p.write_text("en\tfr\nHello\tBonjour\n"), r"a.tsv: header names columns \['en', 'fr'\]"),
    ("a.parquet", lambda p: p.write_bytes(write_parquet(p, PAIRS).read_bytes()[:40]),
     r"a.parquet: not a readable Parquet file"),
    ("a.parquet", lambda p: write_parquet(p, PAIRS, tgt="fr"), r"a.parquet: the translation column holds \['en', 'fr'\]"),
    ("notes.docx", _garbage, r"notes.docx: binary content"),
    ("notes.odt", lambda p: p.write_text("just some words\n"), r"notes.odt: unknown format"),
    ("a.tmx", lambda p: p.write_text("<?xml version='1.0'?><root><tmx/></root>"), r"a.tmx: an XML file whose root is <root>"),
])
def test_broken_files_are_unreadable_with_a_clear_error(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    with pytest.raises(formats.UnreadableFile, match=message):
        _rows(path)


def test_a_truncated_tmx_yields_the_rows_before_the_break(tmp_path):
    path = tmp_path / "a.tmx"
    _truncated_tmx(path)
    read = []
    with pytest.raises(formats.UnreadableFile):
        for row in formats.read_rows(path, path.name, "en", "de", path.parent):
            read.append(row)
    assert [r.line for r in read] == [5, 6, 7, 8, 9]  # the break is on line 10


@pytest.mark.parametrize("rows_text, expected", [
    ('Hello,Hallo\n"unclosed,x\n', [(1, None), (2, "malformed CSV")]),  # a quote never closed
    ("Hello\n", [(1, "1 column(s), expected 2")]),
    ("Hello,Hallo\n\nYes,Ja\n", [(1, None), (2, "blank line"), (3, None)]),
])
def test_csv_row_problems(tmp_path, rows_text, expected):
    path = tmp_path / "a.csv"
    path.write_text(rows_text)
    assert [(r.line, r.problem and r.problem.split(":")[0]) for r in _rows(path)] == expected


def test_a_latin1_file_is_read_with_what_could_not_be_decoded_marked(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_bytes("en\tde\nStreet\tStraße\nYes\tJa\n".encode("latin-1"))
    assert _pairs(_rows(path)) == [("Street", "Stra\ufffde"), ("Yes", "Ja")]


# --- detection: content and extension, and which one decided

@pytest.mark.parametrize("name, content, fmt, how", [
    ("a.jsonl", '{"translation": {"en": "a", "de": "b"}}\n', "jsonl", "content and extension .jsonl agree"),
    ("export.txt", '{"translation": {"en": "a", "de": "b"}}\n', "jsonl", "content looks like jsonl"),
    ("a.csv", '{"translation": {"en": "a, b", "de": "c"}}\n', "jsonl", "extension .csv says csv"),
    ("a.csv", "en\tde\nHello, you\tHallo, du\n", "csv", "extension .csv (content also fits tsv)"),
    ("a.txt", "en\tde\nHello\tHallo\n", "tsv", "content looks like tsv"),
    ("a.tsv", "Hello\n", "tsv", "extension .tsv (content is inconclusive)"),
    ("memory.xml", "<?xml version='1.0'?>\n<tmx version='1.4'><body/></tmx>", "tmx", "content looks like tmx"),
    ("de.txt", 'msgid "a"\nmsgstr "b"\n', "po", "content looks like po"),
])
def test_format_detection_says_what_decided(tmp_path, name, content, fmt, how):
    path = tmp_path / name
    path.write_text(content)
    detected = formats.detect(path, name)
    assert (detected.format, how in detected.how) == (fmt, True), detected.how


def test_binary_formats_are_recognised_by_their_magic_bytes_whatever_the_name(tmp_path):
    mo = write_mo(tmp_path / "catalog.bin", PAIRS)
    parquet = write_parquet(tmp_path / "data.bin", PAIRS)
    assert formats.detect(mo, "catalog.bin").format == "mo"
    assert formats.detect(parquet, "data.bin").format == "parquet"


def test_a_jsonl_key_that_names_the_language_exactly_wins_over_regional_tags(tmp_path):
    """`en` beside `en-GB` is the pair's English as a header's exact name is, not two texts for one language."""
    path = tmp_path / "tm.jsonl"
    path.write_text("\n".join(json.dumps(record) for record in [
        {"translation": {"en": "color", "en-GB": "colour", "de-DE": "Farbe"}},
        {"en-GB": "colour", "en": "color", "de-AT": "Farbe"},
        {"translation": {"en-US": "two", "en-GB": "twice", "de": "zweimal"}},
    ]) + "\n")
    assert [(r.line, r.source, r.target, r.problem) for r in _rows(path)] == [
        (1, "color", "Farbe", None),
        (2, "color", "Farbe", None),
        (3, None, None, "keys 'en-US' and 'en-GB' both name 'en': which text is the pair's is unclear"),
    ]
