"""What every reader of parallel data shares: the Row it yields, its errors, and column picking.

Every physical record of a file becomes one `Row`: either a (source, target) pair, or a `problem` that says
why the record could not be read as one. Validation decides what happens to each row; a reader never
silently skips, so the row accounting (rows in = kept + rejected + deduplicated) can hold.

A reader is a subclass of `Reader` that names its format and extensions, recognises its content
(`sniff`) and yields rows (`rows`). Bytes that are not valid in the file's encoding are decoded as U+FFFD,
so the rest of the text survives and the encoding filter reports the row with what could be read.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterator, NamedTuple

HEAD_BYTES = 64 * 1024  # how much of a file format detection looks at


class Row(NamedTuple):  # a tuple: cheap to make a million of and to send to worker processes
    line: int  # 1-based line of the record's start; for MO and Parquet, the record's position
    source: str | None
    target: str | None
    problem: str | None = None  # set when the record is not a usable pair
    reason: str = "unreadable_row"  # the reject reason that goes with `problem`


@dataclass(frozen=True)
class Languages:
    source: str
    target: str


class UnreadableFile(ValueError):
    """A whole file that cannot be read as parallel data: unknown format, wrong columns, broken structure."""


class Reader:
    format: ClassVar[str]
    extensions: ClassVar[tuple[str, ...]]
    # False for shapes that many files have (a line with a comma): then the extension decides.
    decisive_signature: ClassVar[bool] = True

    def sniff(self, head: bytes) -> bool:
        """True when the first bytes of a file look like this format."""
        raise NotImplementedError

    def rows(self, path: Path, name: str, langs: Languages) -> Iterator[Row]:
        raise NotImplementedError


def lang_code(label: str) -> str | None:
    """'en', 'EN', 'en-US', 'en_GB' → 'en'; None when the label does not look like a language tag."""
    found = re.fullmatch(r"([a-z]{2,3})(?:[_-][a-z0-9]{2,8})*", label.strip().lower())
    return found.group(1) if found else None


_ROLE_NAMES = {"source": 0, "src": 0, "target": 1, "tgt": 1}


def pick_columns(header: list[str], langs: Languages, name: str) -> tuple[int, int] | None:
    """Column indices of the pair when `header` names them, else None (the line is data, not a header).

    Columns are named by language ('en', 'de-DE') or by role ('source', 'target'). A header that names one
    of the pair's languages but not the other describes another pair: the file cannot be used.
    """
    codes = [lang_code(cell) for cell in header]
    if langs.source in codes and langs.target in codes:
        return codes.index(langs.source), codes.index(langs.target)
    roles = [_ROLE_NAMES.get(cell.strip().lower()) for cell in header]
    if 0 in roles and 1 in roles:
        return roles.index(0), roles.index(1)
    if all(codes) and (langs.source in codes or langs.target in codes):
        raise UnreadableFile(f"{name}: header names columns {[c.strip() for c in header]}, but not both "
                             f"{langs.source!r} and {langs.target!r}")
    return None


def open_text(path: Path, newline: str | None = "\n") -> io.TextIOBase:
    """The file as text: UTF-8 (a BOM is skipped) or UTF-16 with a BOM; undecodable bytes become U+FFFD."""
    with path.open("rb") as fh:
        bom = fh.read(4)
    encoding = "utf-16" if bom[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    return path.open(encoding=encoding, errors="replace", newline=newline)


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The file's lines, numbered from 1. Lines end in LF or CRLF; a file whose first HEAD_BYTES hold a CR and no LF
    ends its lines in CR alone (a classic Mac export): read by LF, it would be one line, one rejected row for the
    whole file's pairs. A stray CR inside a line of an LF file stays text (cleaning folds it into a space)."""
    with path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
    newline = "\r" if b"\r" in head and b"\n" not in head else "\n"
    with open_text(path, newline=newline) as fh:
        for number, line in enumerate(fh, start=1):
            yield number, line.rstrip("\r\n")
