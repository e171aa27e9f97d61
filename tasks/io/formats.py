"""Which reader reads a file: the format is detected from its content and its extension, and said.

Content wins when it is unambiguous (MO and Parquet magic bytes, a `<tmx` root, `msgid` lines, a JSON
object per line): a JSONL export named `.txt` or `.csv` is still read as JSONL, and the report says so.
When the content only has a common shape (a line with tabs or commas), a known extension decides; when
the content fits nothing, the extension alone does. An empty file, a zip archive and binary content (NUL
bytes in text that is neither MO, Parquet nor UTF-16 with a byte-order mark) are refused, naming the file:
read as text, they would become rows of garbage next to good data. Compressed files are decompressed before
they get here (tasks/io/compression.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tasks.io import compression
from tasks.io.reader import HEAD_BYTES, Languages, Reader, Row, UnreadableFile
from tasks.io.structured_readers import MoReader, ParquetReader, PoReader, TmxReader
from tasks.io.text_readers import CsvReader, JsonLinesReader, TsvReader

__all__ = ["Detected", "Languages", "Row", "UnreadableFile", "READERS", "EXTENSIONS", "detect", "read_rows"]

# Most specific content signature first: magic bytes, then markup, then line shapes.
READERS: tuple[Reader, ...] = (MoReader(), ParquetReader(), TmxReader(), PoReader(), JsonLinesReader(),
                               TsvReader(), CsvReader())
EXTENSIONS = {ext: reader for reader in READERS for ext in reader.extensions}


@dataclass(frozen=True)
class Detected:
    reader: Reader
    how: str  # why this format, for the report and the log

    @property
    def format(self) -> str:
        return self.reader.format


def _refuse_non_text(head: bytes, name: str) -> None:
    if not head:
        raise UnreadableFile(f"{name}: empty file")
    if head.startswith(compression.ZIP_MAGIC):
        raise UnreadableFile(f"{name}: a zip archive; pull reads single files: unpack it into the data folder")
    if (kind := compression.detect(head)) is not None:
        raise UnreadableFile(f"{name}: still {kind}-compressed after decompression (compressed twice?)")
    binary_formats = (MoReader, ParquetReader)
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")) and \
            not any(isinstance(r, binary_formats) and r.sniff(head) for r in READERS):
        raise UnreadableFile(f"{name}: binary content (NUL bytes), not text in any supported format")


def _as_utf8(head: bytes) -> bytes:
    """The first bytes as the sniffers read them: UTF-16 with a byte-order mark (what the readers decode) is
    re-encoded as UTF-8, else a UTF-16 JSON Lines file has no `{` where a line starts but a `,` in its first
    line, and was read as CSV: each JSON object cut at its comma, kept as a pair of garbage."""
    if not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head
    return head[:len(head) & ~1].decode("utf-16", errors="replace").encode("utf-8")


def detect(path: Path, name: str) -> Detected:
    with path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
    _refuse_non_text(head, name)
    suffix = Path(compression.data_name(name)).suffix.lower()
    by_extension = EXTENSIONS.get(suffix)
    sniffed = _as_utf8(head)
    by_content = [reader for reader in READERS if reader.sniff(sniffed)]
    if by_content and by_content[0] is by_extension:
        return Detected(by_extension, f"content and extension {suffix} agree")
    if by_content and (by_content[0].decisive_signature or by_extension is None):
        chosen = by_content[0]
        said = f"; extension {suffix} says {by_extension.format}" if by_extension else ""
        return Detected(chosen, f"content looks like {chosen.format}{said}")
    if by_extension is not None:
        also = f"also fits {by_content[0].format}" if by_content else "is inconclusive"
        return Detected(by_extension, f"extension {suffix} (content {also})")
    if not head.strip():
        raise UnreadableFile(f"{name}: only whitespace")
    raise UnreadableFile(f"{name}: unknown format: neither content nor extension {suffix!r} matches one of "
                         f"{sorted(r.format for r in READERS)}")


def plain(path: Path, name: str, scratch: Path) -> tuple[Path, str | None]:
    """The file's content uncompressed (a decompressed copy in `scratch` when it is compressed), and the
    compression it had."""
    out = scratch / f"decompressed-{hashlib.blake2b(str(path).encode(), digest_size=8).hexdigest()}"
    try:
        found = compression.decompress(path, out)
    except compression.CompressionError as err:
        raise UnreadableFile(f"{name}: {err}") from None
    return (out, found) if found else (path, None)


def read_rows(path: Path, name: str, source_lang: str, target_lang: str, scratch: Path) -> Iterator[Row]:
    path, _ = plain(path, name, scratch)
    return detect(path, name).reader.rows(path, name, Languages(source_lang, target_lang))
