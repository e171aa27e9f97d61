"""Readers that turn a parallel-data file into numbered rows, without dropping any.

Every physical record of a file becomes one `Row`: either a (source, target) pair, or a `problem` that
says why the record could not be read as one. Validation decides what happens to each row; a reader never
silently skips, so the row accounting (rows in = kept + rejected + deduplicated) can hold.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator


@dataclass(frozen=True)
class Row:
    file: str
    line: int
    source: str | None
    target: str | None
    problem: str | None = None


class UnreadableFile(ValueError):
    """A whole file that cannot be read as parallel data (unknown format, wrong columns)."""


def _decode(raw: bytes) -> tuple[str, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as err:
        return raw.decode("utf-8", errors="replace"), f"not valid UTF-8 at byte {err.start}"


def _lines(path: Path) -> Iterator[tuple[int, str, str | None]]:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            text, problem = _decode(raw.rstrip(b"\r\n"))
            yield number, text, problem


def read_jsonl(path: Path, name: str, src: str, tgt: str) -> Iterator[Row]:
    """run_translation.py's contract: one `{"translation": {"en": ..., "de": ...}}` object per line."""
    for number, text, problem in _lines(path):
        if problem:
            yield Row(name, number, None, None, problem)
            continue
        if not text.strip():
            yield Row(name, number, None, None, "blank line")
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            yield Row(name, number, None, None, f"invalid JSON: {err.msg} at column {err.colno}")
            continue
        pair = record.get("translation") if isinstance(record, dict) else None
        if not isinstance(pair, dict):
            yield Row(name, number, None, None, 'no "translation" object')
            continue
        missing = [lang for lang in (src, tgt) if not isinstance(pair.get(lang), str)]
        if missing:
            yield Row(name, number, None, None, f"no {'/'.join(missing)} text in translation")
            continue
        yield Row(name, number, pair[src], pair[tgt])


def read_tsv(path: Path, name: str, src: str, tgt: str) -> Iterator[Row]:
    """Tab-separated; a header naming the language codes picks the columns, else columns 1 and 2."""
    rows = _lines(path)
    first = next(rows, None)
    if first is None:
        return
    number, text, problem = first
    header = [c.strip().lower() for c in text.split("\t")]
    looks_like_header = all(re.fullmatch(r"[a-z]{2,3}([_-][a-z]+)?", h) for h in header)
    if src in header and tgt in header:
        si, ti = header.index(src), header.index(tgt)
    elif looks_like_header and (src in header or tgt in header):
        raise UnreadableFile(f"{name}: header names columns {header}, but not both {src!r} and {tgt!r}")
    else:
        si, ti = 0, 1
        rows = _chain_first(first, rows)
    width = max(si, ti) + 1
    for number, text, problem in rows:
        if problem:
            yield Row(name, number, None, None, problem)
            continue
        cells = next(csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))
        if len(cells) < width:
            yield Row(name, number, None, None, f"{len(cells)} column(s), expected at least {width}")
            continue
        yield Row(name, number, cells[si], cells[ti])


def _chain_first(first, rest):
    yield first
    yield from rest


READERS: dict[str, Callable[[Path, str, str, str], Iterator[Row]]] = {
    ".jsonl": read_jsonl,
    ".tsv": read_tsv,
}


def reader_for(name: str) -> Callable[[Path, str, str, str], Iterator[Row]]:
    suffix = Path(name).suffix.lower()
    try:
        return READERS[suffix]
    except KeyError:
        raise UnreadableFile(f"{name}: unsupported format {suffix!r}; supported: {sorted(READERS)}") from None


def read_rows(path: Path, name: str, src: str, tgt: str) -> Iterator[Row]:
    return reader_for(name)(path, name, src, tgt)
