"""Readers for line-oriented text: JSON Lines, TSV and CSV."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import Iterator

from tasks.io.reader import Languages, Reader, Row, UnreadableFile, lang_code, numbered_lines, open_text, pick_columns


class JsonLinesReader(Reader):
    """run_translation.py's contract: one `{"translation": {"en": ..., "de": ...}}` object per line.

    Flat objects (`{"en": ..., "de": ...}`, as a dataset's columns export) are read too.
    """

    format = "jsonl"
    extensions = (".jsonl", ".ndjson", ".json")

    def sniff(self, head: bytes) -> bool:
        first = next((line for line in head.lstrip(b"\xef\xbb\xbf").splitlines() if line.strip()), b"")
        if not first.lstrip().startswith(b"{"):
            return False
        try:
            return isinstance(json.loads(first), dict)
        except ValueError:
            return False

    def rows(self, path: Path, name: str, langs: Languages) -> Iterator[Row]:
        src, tgt = langs.source, langs.target
        loads = json.loads
        for number, text in numbered_lines(path):
            if not text.strip():
                yield Row(number, None, None, "blank line")
                continue
            try:
                record = loads(text)
            except json.JSONDecodeError as err:
                yield Row(number, None, None, f"invalid JSON: {err.msg} at column {err.colno}")
                continue
            if isinstance(record, list) and len(record) == 1 and isinstance(record[0], dict):
                record = record[0]  # one record in brackets (a one-row `to_json(orient='records')`): that record
            pair = record.get("translation") if isinstance(record, dict) else None
            flat = pair is None and isinstance(record, dict)  # a dataset's columns exported flat, or no pair
            if flat or isinstance(pair, dict):
                pair, problem = _by_tag(record if flat else pair, src, tgt)
                if problem:
                    yield Row(number, None, None, problem)
                    continue
                if flat and (src not in pair or tgt not in pair):
                    pair = None
            if pair is None and _many_records(record, src):
                raise UnreadableFile(f"{name}: line {number} holds a JSON {type(record).__name__} of many records, "
                                     "not one record: JSON Lines has one object per line (pandas: to_json("
                                     "orient='records', lines=True)); read as one row, all its pairs would be lost")
            if not isinstance(pair, dict):
                yield Row(number, None, None, 'no "translation" object')
                continue
            source, target = pair.get(src), pair.get(tgt)
            if type(source) is not str or type(target) is not str:
                missing = [lang for lang, text in ((src, source), (tgt, target)) if not isinstance(text, str)]
                yield Row(number, None, None, f"no {'/'.join(missing)} text in translation")
                continue
            yield Row(number, source, target)


def _by_tag(pair: dict, src: str, tgt: str) -> tuple[dict, str | None]:
    """The pair with its texts under `src` and `tgt`: as it is when it names them so, else read by the language of
    its keys where they are language tags (`{"en-US": ..., "de-DE": ...}`, as translation memories name them; a TSV
    header or a TMX file is read the same way); with a reason when two keys name one language (`en-US`, `en-GB`).
    A key that is the language's code itself is its text whatever other tags name it (`en` beside `en-GB`)."""
    if src in pair and tgt in pair:
        return pair, None
    found: dict[str, str] = {code: code for code in (src, tgt) if code in pair}
    for key in pair:
        code = lang_code(key) if isinstance(key, str) else None
        if code not in (src, tgt) or found.get(code) == code:
            continue
        if code in found:
            return pair, f"keys {found[code]!r} and {key!r} both name {code!r}: which text is the pair's is unclear"
        found[code] = key
    return ({code: pair[key] for code, key in found.items()} if found else pair), None


def _many_records(record, source_lang: str) -> bool:
    """A whole export on one line: a JSON array (`to_json(orient='records')`), or an object that wraps an array of
    records (`{"data": [{"translation": ...}, ...]}`; a record with other fields that are lists is one bad row)."""
    if isinstance(record, dict):
        return any(isinstance(value, list) and len(value) > 1 and isinstance(value[0], dict)
                   and ("translation" in value[0] or source_lang in value[0]) for value in record.values())
    # One record in brackets, a stray line among good ones, is one bad row: not a whole batch refused.
    return isinstance(record, list) and len(record) > 1 and isinstance(record[0], (dict, list))


class TsvReader(Reader):
    """Tab-separated, no quoting (a cell in CSV quotes with its quotes doubled, as pandas writes one, is unquoted:
    `_unquoted`); a header naming the languages picks the columns, else columns 1 and 2. A row
    with more columns than the header (or than two, without one) is rejected, never cut to fit: an extra tab
    means the row is not the pair it seems."""

    format = "tsv"
    extensions = (".tsv", ".tab")
    decisive_signature = False

    def sniff(self, head: bytes) -> bool:
        return b"\t" in _first_line(head)

    def rows(self, path: Path, name: str, langs: Languages) -> Iterator[Row]:
        lines = numbered_lines(path)
        first = next(lines, None)
        if first is None:
            return
        header = first[1].split("\t")
        columns = pick_columns(header, langs, name)
        width = len(header) if columns is not None else 2
        if columns is None:
            columns = (0, 1)
            yield _pair(first[0], [_unquoted(cell) for cell in header], columns, width)
        for number, text in lines:
            yield _pair(number, [_unquoted(cell) for cell in text.split("\t")], columns, width)


def _unquoted(cell: str) -> str:
    """A TSV cell as CSV writers quote one that holds a quote (pandas' to_csv(sep='\\t'), spreadsheets): wrapped in
    quotes, its own quotes doubled. Only that form is unquoted: `"Hello"` alone may be quoted speech, but doubled
    quotes are never text, and kept they taught the model to write them."""
    if len(cell) < 4 or cell[0] != '"' or cell[-1] != '"':
        return cell
    inner = cell[1:-1]
    return inner.replace('""', '"') if '""' in inner and '"' not in inner.replace('""', "") else cell


class CsvReader(Reader):
    """Comma-, semicolon- or tab-separated with standard quoting (a quoted field may span lines). Rows with more
    fields than the header (or than two, without one) are rejected; so is a record whose quoted field swallowed
    whole lines of further records, the mark of a quote that was never closed."""

    format = "csv"
    extensions = (".csv",)
    decisive_signature = False

    def sniff(self, head: bytes) -> bool:
        first = _first_line(head)
        return b"\t" not in first and (b"," in first or b";" in first)

    def rows(self, path: Path, name: str, langs: Languages) -> Iterator[Row]:
        with open_text(path, newline="") as fh:
            first = fh.readline()
            # Spreadsheets in many locales export with ';' because ',' is their decimal mark; a tab-separated
            # export is sometimes named .csv too. The first line's most frequent candidate wins.
            delimiter = max(",;\t", key=first.count)
            reader = csv.reader(itertools.chain([first], fh), delimiter=delimiter, strict=True)
            columns, width = None, 2  # decided by the first record: a header, or data in columns 1 and 2
            start = 1
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as err:
                    yield Row(start, None, None, f"malformed CSV: {err}")
                    columns = columns or (0, 1)
                else:
                    if columns is None:
                        columns = pick_columns(cells, langs, name)
                        if columns is not None:  # a header, not data
                            width, start = len(cells), reader.line_num + 1
                            continue
                        columns = (0, 1)
                    yield _merged(start, reader.line_num, cells, delimiter) or _pair(start, cells, columns, width)
                start = reader.line_num + 1


def _merged(start: int, end: int, cells: list[str], delimiter: str) -> Row | None:
    """A record that spans lines, where a field holds a further line that looks like another record, and the
    fields do not span lines alike: a quote left open swallowed the records after it. A translation that really
    spans lines does so on both sides, with as many lines in each."""
    spanning = [cell.split("\n") for cell in cells if "\n" in cell]
    alike = len(spanning) >= 2 and len({len(lines) for lines in spanning}) == 1
    if end > start and not alike and any(delimiter in line for lines in spanning for line in lines[1:]):
        return Row(start, None, None, f"lines {start}–{end} read as one record: a quote opened on line {start} "
                                      f"is not closed where the row ends")
    return None


def _first_line(head: bytes) -> bytes:
    return head.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0]


def _pair(number: int, cells: list[str], columns: tuple[int, int], width: int) -> Row:
    if not "".join(cells).strip():
        return Row(number, None, None, "blank line")
    if len(cells) != width:
        return Row(number, None, None, f"{len(cells)} column(s), expected {width}")
    return Row(number, cells[columns[0]], cells[columns[1]])

