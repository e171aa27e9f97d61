"""The two normal forms of a sentence, and the keys and hash buckets built on them.

`clean` is what we train on: Unicode NFC with runs of whitespace collapsed, nothing else changed.
`match_key` is what counts as "the same sentence" for deduplication: it also folds case and compatibility
characters (NFKC), so "Cannot open  file" and "cannot open file" meet. `source_form` is what counts as the same
source for test-set leakage and the split: `match_key` with punctuation and symbols read as spaces as well, so
"Don't click Save." and "Don’t click “Save”" meet: a test sentence exported again with other quotes or without
its full stop is still the test sentence. Every step that compares sentences uses these functions, so a
sentence and its duplicates always agree.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_NOT_WORD = re.compile(r"[^\w\s]+")  # punctuation and symbols: what is left of a sentence is its words


def clean(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def match_key(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def key_of(text: str) -> int:
    """A stable 64-bit key (Python's hash() differs between processes): small enough to hold a million of,
    and two different sentences among a million collide with a chance of about 1 in 30 million."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def source_form(text: str, matched: str | None = None) -> str:
    """`match_key` (or `matched`, the text's match_key already made) with punctuation and symbols as spaces; a text
    of nothing else keeps them ("..." and "→" stay apart)."""
    matched = match_key(text) if matched is None else matched
    return " ".join(_NOT_WORD.sub(" ", matched).split()) or matched


def source_key(source: str) -> int:
    """What identifies a source sentence across runs and steps for test-set leakage and the split."""
    return key_of(source_form(source))


def bucket(source: str) -> float:
    """A stable number in [0, 1) for a source sentence, the same for all its normalized duplicates."""
    return bucket_of(source_key(source))


def bucket_of(key: int) -> float:
    """`bucket` of the sentence whose `source_key` is `key`."""
    return key / 2**64
