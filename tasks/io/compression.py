"""Compressed data files: recognised by their first bytes, not by their names, and decompressed as they stream.

A data team exports `pairs.jsonl.gz`, or gzips a file and keeps the name `pairs.jsonl`: either way the content
says gzip, and validation reads what is inside (the report says it was compressed, and how). gzip, bzip2, xz
and zstd are read; a zip archive holds several files and is refused with a reason, like any file that is
binary once decompressed (tasks/io/formats.py). A file that expands beyond any text corpus (more than
MAX_RATIO times its compressed size, past a floor of MIN_LIMIT bytes) is refused as a decompression bomb before
it fills the worker's disk.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path
from typing import BinaryIO, Callable

import zstandard

# magic bytes → (name, how to open a stream of the decompressed content)
_CODECS: dict[bytes, tuple[str, Callable[[BinaryIO], BinaryIO]]] = {
    b"\x1f\x8b": ("gzip", lambda fh: gzip.GzipFile(fileobj=fh)),
    b"BZh": ("bzip2", lambda fh: bz2.BZ2File(fh)),
    b"\xfd7zXZ\x00": ("xz", lambda fh: lzma.LZMAFile(fh)),
    b"\x28\xb5\x2f\xfd": ("zstd", lambda fh: _ZstdFrames(fh)),
}
SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstd", ".zstd": "zstd"}
ZIP_MAGIC = b"PK\x03\x04"
MAX_RATIO = 100  # text corpora compress 3–10× (zstd -19 on repetitive catalogs: under 20×)
MIN_LIMIT = 256 << 20


class CompressionError(ValueError):
    """A compressed file that cannot be decompressed (truncated or corrupt)."""


class _ZstdFrames:
    """The zstd frames of a file, one after another, decompressed as a stream that raises EOFError where the file
    ends inside a frame, as gzip, bzip2 and xz do. python-zstandard's stream_reader ends quietly there: a
    half-uploaded export read as a shorter corpus, its last row cut mid-sentence (a TSV pair with half a target)."""

    STEP = 4096  # compressed bytes per step: one step's output stays bounded (a block decompresses to <= 128 KiB)

    def __init__(self, raw: BinaryIO):
        self._raw, self._codec, self._frame, self._pending = raw, zstandard.ZstdDecompressor(), None, b""

    def __enter__(self) -> "_ZstdFrames":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def read(self, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            data, self._pending = self._pending or self._raw.read(self.STEP), b""
            if not data:
                if self._frame is not None:
                    raise EOFError("Compressed file ended before the end of a zstd frame (truncated?)")
                break
            self._frame = self._frame or self._codec.decompressobj()
            out += self._frame.decompress(data)
            if self._frame.eof:  # the next frame, if any, starts in what this one left
                self._pending, self._frame = self._frame.unused_data, None
        return bytes(out)


def detect(head: bytes) -> str | None:
    """The compression the first bytes announce, or None for plain content."""
    return next((name for magic, (name, _) in _CODECS.items() if head.startswith(magic)), None)


def data_name(name: str) -> str:
    """The name without its compression suffix: `a.jsonl.gz` → `a.jsonl` (what the format is told by)."""
    path = Path(name)
    return str(path.with_suffix("")) if path.suffix.lower() in SUFFIXES else name


def decompress(path: Path, out: Path) -> str | None:
    """Write `path`'s decompressed content to `out` and return the compression's name; None (and nothing
    written) when the file is not compressed."""
    with path.open("rb") as fh:
        head = fh.read(8)
    found = next(((name, opener) for magic, (name, opener) in _CODECS.items() if head.startswith(magic)), None)
    if found is None:
        return None
    name, opener = found
    size = path.stat().st_size
    limit = max(MIN_LIMIT, MAX_RATIO * size)
    written = 0
    try:
        with path.open("rb") as raw, opener(raw) as stream, out.open("wb") as sink:
            while chunk := stream.read(1 << 20):
                written += len(chunk)
                if written > limit:
                    raise CompressionError(
                        f"{name}-compressed, and it expands past {limit:,} bytes ({MAX_RATIO}× its "
                        f"{size:,} bytes or {MIN_LIMIT >> 20} MiB, whichever is more): refused "
                        "as a decompression bomb, not a corpus")
                sink.write(chunk)
    except (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError) as err:
        out.unlink(missing_ok=True)
        raise CompressionError(f"{name}-compressed, but it cannot be decompressed: {err}") from None
    except CompressionError:
        out.unlink(missing_ok=True)
        raise
    return name
