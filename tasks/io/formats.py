"""Which reader reads a file: the format is detected from its content and its extension, and said.

Content wins when it is unambiguous (MO and Parquet magic bytes, a `<tmx` root, `msgid` lines, a JSON
object per line): a JSONL export named `.txt` or `.csv` is still read as JSONL, and the report says so.
When the content only has a common shape (a line with tabs or commas), a known extension decides; when
the content fits nothing, the extension alone does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

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


def detect(path: Path, name: str) -> Detected:
    with path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
    suffix = Path(name).suffix.lower()
    by_extension = EXTENSIONS.get(suffix)
    by_content = [reader for reader in READERS if reader.sniff(head)]
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
        raise UnreadableFile(f"{name}: empty file")
    raise UnreadableFile(f"{name}: unknown format: neither content nor extension {suffix!r} matches one of "
                         f"{sorted(r.format for r in READERS)}")


def read_rows(path: Path, name: str, source_lang: str, target_lang: str) -> Iterator[Row]:
    return detect(path, name).reader.rows(path, name, Languages(source_lang, target_lang))
