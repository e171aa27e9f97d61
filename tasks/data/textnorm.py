"""The two normal forms of a sentence, and the keys and hash buckets built on them.

`clean` is what we train on: Unicode NFC with runs of whitespace collapsed, nothing else changed.
`match_key` is what counts as "the same sentence" for deduplication, test-set leakage and the split: it
also folds case and compatibility characters (NFKC), so "Cannot open  file" and "cannot open file" meet.
Every step that compares sentences uses these functions, so a sentence and its duplicates always agree.
"""

from __future__ import annotations

import hashlib
import unicodedata


def clean(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def match_key(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def key_of(text: str) -> int:
    """A stable 64-bit key (Python's hash() differs between processes): small enough to hold a million of,
    and two different sentences among a million collide with a chance of about 1 in 30 million."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def source_key(source: str) -> int:
    """What identifies a source sentence across duplicates, runs and steps (dedup, leakage, split)."""
    return key_of(match_key(source))


def bucket(source: str) -> float:
    """A stable number in [0, 1) for a source sentence, the same for all its normalized duplicates."""
    return bucket_of(source_key(source))


def bucket_of(key: int) -> float:
    """`bucket` of the sentence whose `source_key` is `key`."""
    return key / 2**64
