"""Readers for formats that a maintained library parses: TMX (lxml), gettext PO and MO (polib), Parquet (pyarrow).

Their failures are turned into our own `UnreadableFile` errors that name the file and, where the library
knows it, the line; a library's exception never reaches the task log without that context.
"""

from __future__ import annotations

import codecs
import re
import struct
from pathlib import Path
from typing import Iterator

import polib
from lxml import etree

from tasks.io.reader import HEAD_BYTES, Languages, Reader, Row, UnreadableFile, lang_code, pick_columns

_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# TMX inline elements that stand for the original document's native codes (tags, fields): their content
# is not text of the sentence. <hi> and <sub> hold real text and are kept.
_TMX_NATIVE_CODES = {"bpt", "ept", "it", "ph", "ut"}


class TmxReader(Reader):
    """TMX, the translation-memory exchange format CAT tools and localization platforms export.

    Parsed with lxml's iterparse rather than translate-toolkit's tmxfile: tmxfile builds the whole document
    in memory, which a multi-gigabyte memory export cannot afford, and it hides the line numbers that our
    rejects report. lxml (libxml2) is the maintained XML parser underneath either way; streaming it with
    entity resolution and network access off keeps the parse safe and flat in memory.
    """

    format = "tmx"
    extensions = (".tmx",)

    def sniff(self, head: bytes) -> bool:
        return re.search(rb"<tmx[\s>]", head) is not None

    def rows(self, path: Path, name: str, langs: Languages) -> Iterator[Row]:
        parser = etree.iterparse(str(path), events=("end",), tag="tu", resolve_entities=False, no_network=True)
        try:
            for _, tu in parser:
                yield self._row(tu, langs)
                # Free what has been read: the tree never grows beyond one <tu>.
                tu.clear(keep_tail=True)
                while tu.getprevious() is not None:
                    del tu.getparent()[0]
        except etree.XMLSyntaxError as err:
            raise UnreadableFile(f"{name}: broken TMX at line {err.lineno}: {err.msg} (the rows before it were "
                                 f"read; the rest of the file is lost)") from None
        root = parser.root
        if root is not None and root.tag != "tmx":
            raise UnreadableFile(f"{name}: an XML file whose root is <{root.tag}>, not <tmx>")

    @staticmethod
    def _row(tu, langs: Languages) -> Row:
        texts: dict[str, str] = {}
        seen = []
        for tuv in tu.iterchildren("tuv"):
            label = tuv.get(_XML_LANG) or tuv.get("lang") or ""  # TMX 1.1 used a plain lang attribute
            seen.append(label)
            code = lang_code(label)
            seg = tuv.find("seg")
            if code in (langs.source, langs.target) and code not in texts and seg is not None:
                texts[code] = _segment_text(seg)
        missing = [code for code in (langs.source, langs.target) if code not in texts]
        if missing:
            return Row(tu.sourceline, None, None, f"<tu> has no {'/'.join(missing)} variant (has {seen})")
        return Row(tu.sourceline, texts[langs.source], texts[langs.target])


def _segment_text(seg) -> str:
    parts = [seg.text or ""]
    for child in seg:
        if child.tag not in _TMX_NATIVE_CODES:
            parts.append(_segment_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


class PoReader(Reader):
    """gettext PO catalogs: msgid in the program's language, msgstr in the catalog's `Language`.

    Fuzzy entries (the translator was not sure) and obsolete ones (#~, no longer used) are rows rejected
    with their own reason. A plural entry gives two rows: singular and plural.
    """

    format = "po"
    extensions = (".po", ".pot")

    def sniff(self, head: bytes) -> bool:
        return re.search(rb'(?m)^msgid\s+"', head) is not None and b"msgstr" in head

    def rows(self, path: Path, name: str, langs: Languages) -> Iterator[Row]:
        _check_po_header(path, name)
        try:
            catalog = polib.pofile(str(path), wrapwidth=0)
        except (OSError, ValueError, LookupError) as err:  # UnicodeDecodeError is a ValueError
            raise UnreadableFile(f"{name}: not a readable PO catalog: {_polib_message(err, path)}") from None
        reverse = _catalog_direction(catalog.metadata, langs, name)
        for entry in catalog:
            line = entry.linenum
            if entry.obsolete:
                yield Row(line, None, None, "obsolete entry (#~): the program no longer uses it", "obsolete")
                continue
            for msgid, msgstr in _forms(entry):
                source, target = (msgstr, msgid) if reverse else (msgid, msgstr)
                if "fuzzy" in entry.flags:
                    yield Row(line, source, target, "marked fuzzy: the translator was not sure of it", "fuzzy")
                else:
                    yield Row(line, source, target)


class MoReader(Reader):
    """Compiled gettext catalogs; rows are numbered by their position in the catalog (MO has no lines)."""

    format = "mo"
    extensions = (".mo", ".gmo")

    def sniff(self, head: bytes) -> bool:
        return head[:4] in (b"\xde\x12\x04\x95", b"\x95\x04\x12\xde")

    def rows(self, path: Path, name: str, langs: Languages) -> Iterator[Row]:
        try:
            catalog = polib.mofile(str(path))
        except (OSError, ValueError, LookupError, struct.error, IndexError) as err:
            raise UnreadableFile(f"{name}: not a readable MO catalog: {_polib_message(err, path)}") from None
        reverse = _catalog_direction(catalog.metadata, langs, name)
        for number, entry in enumerate(catalog, start=1):
            for msgid, msgstr in _forms(entry):
                yield Row(number, msgstr, msgid) if reverse else Row(number, msgid, msgstr)


# The header entry: msgid "" then msgstr "" and its continuation strings, at the top of the catalog.
_PO_HEADER = re.compile(r'^msgid ""\s*\nmsgstr ""\s*\n((?:[ \t]*"(?:[^"\\\n]|\\.)*"[ \t]*\n)*)', re.M)
_HEADER_FIELD = re.compile(r"^[A-Za-z][\w-]*:")


def _check_po_header(path: Path, name: str) -> None:
    """The header must be `Name: value` lines: polib drops a leading line that is not one, silently, and with
    it maybe the Language or charset the catalog is read by."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        head = fh.read(HEAD_BYTES)
    found = _PO_HEADER.search(head)
    if found is None:
        return  # no header entry: no Language to read the direction from (msgstr is taken as the target)
    text = "".join(part[1:-1] for part in re.findall(r'"(?:[^"\\\n]|\\.)*"', found.group(1)))
    for line in text.replace("\\n", "\n").split("\n"):
        if line.strip() and not _HEADER_FIELD.match(line):
            raise UnreadableFile(f"{name}: the catalog header cannot be parsed: {line!r} is not a 'Name: value' "
                                 "line, so its Language and charset cannot be trusted")


def _forms(entry) -> list[tuple[str, str]]:
    """(msgid, msgstr) of an entry; a plural entry pairs singular with form 0 and plural with form 1."""
    if not entry.msgid_plural:
        return [(entry.msgid, entry.msgstr)]
    forms = entry.msgstr_plural
    return [(entry.msgid, forms.get(0, "")), (entry.msgid_plural, forms.get(1, forms.get(0, "")))]


def _catalog_direction(metadata: dict, langs: Languages, name: str) -> bool:
    """Check the header; True when msgstr holds the source language (a de→en run on a German catalog)."""
    for key, value in metadata.items():
        if "\n" in value:  # polib folds a line that is not 'Name: value' into the field before it
            bad = value.split("\n", 2)[1]
            raise UnreadableFile(f"{name}: the catalog header cannot be parsed: {bad!r} (after {key}) is not a "
                                 f"'Name: value' line, so its Language and charset cannot be trusted")
    charset = re.search(r"charset=([\w.:-]+)", metadata.get("Content-Type", ""))
    if charset:
        try:
            codecs.lookup(charset.group(1))
        except LookupError:
            raise UnreadableFile(f"{name}: header declares charset {charset.group(1)!r}, which is not an "
                                 f"encoding") from None
    declared = metadata.get("Language", "").strip()
    if not declared:
        return False  # no Language header: msgstr is taken to be the target language
    code = lang_code(declared)
    if code not in (langs.source, langs.target):
        raise UnreadableFile(f"{name}: catalog is for language {declared!r}, not {langs.target!r} (or "
                             f"{langs.source!r})")
    return code == langs.source


def _polib_message(err: Exception, path: Path) -> str:
    message = str(err).replace(f"{path} ", "").replace(str(path), "")
    return message or type(err).__name__


class ParquetReader(Reader):
    """Parquet: a `translation` struct column (a Hugging Face dataset's layout) or columns named by language."""

    format = "parquet"
    extensions = (".parquet", ".pq")
    BATCH_ROWS = 8192

    def sniff(self, head: bytes) -> bool:
        return head[:4] == b"PAR1"

    def rows(self, path: Path, name: str, langs: Languages) -> Iterator[Row]:
        import pyarrow as pa  # heavy (it loads numpy and Arrow's C++ core): imported only for Parquet files
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as err:
            raise UnreadableFile(f"{name}: not a readable Parquet file: {err}") from None
        schema = table.schema_arrow
        if "translation" in schema.names and pa.types.is_struct(schema.field("translation").type):
            fields = [f.name for f in schema.field("translation").type]
            if langs.source not in fields or langs.target not in fields:
                raise UnreadableFile(f"{name}: the translation column holds {fields}, not both "
                                     f"{langs.source!r} and {langs.target!r}")
            columns, pick = ["translation"], lambda b: (b.column(0).field(langs.source),
                                                         b.column(0).field(langs.target))
        else:
            picked = pick_columns(schema.names, langs, name)
            if picked is None:
                raise UnreadableFile(f"{name}: no 'translation' struct column and no {langs.source!r}/"
                                     f"{langs.target!r} columns (columns: {schema.names})")
            columns, pick = [schema.names[i] for i in picked], lambda b: (b.column(0), b.column(1))
        number = 0
        try:
            for batch in table.iter_batches(batch_size=self.BATCH_ROWS, columns=columns):
                sources, targets = (column.to_pylist() for column in pick(batch))
                for source, target in zip(sources, targets):
                    number += 1
                    if isinstance(source, str) and isinstance(target, str):
                        yield Row(number, source, target)
                    else:
                        yield Row(number, None, None, f"source {type(source).__name__}, target "
                                                      f"{type(target).__name__}: expected two strings")
        except pa.ArrowException as err:
            raise UnreadableFile(f"{name}: broken Parquet after row {number}: {err}") from None
