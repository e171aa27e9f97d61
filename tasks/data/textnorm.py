"""The two normal forms of a sentence, and the keys and hash buckets built on them.

`clean` is what we train on: Unicode NFC with runs of whitespace collapsed, nothing else changed.
`match_key` is what counts as "the same sentence" for deduplication: it also folds case and compatibility
characters (NFKC) and drops invisible format characters (a soft hyphen, a zero-width space), so "Cannot open  file",
"cannot open file" and "can\u00adnot open file" meet. `source_form` is what counts as the same
source for test-set leakage and the split: `match_key` with punctuation and symbols read as spaces as well, so
"Don't click Save." and "Don’t click “Save”" meet: a test sentence exported again with other quotes or without
its full stop is still the test sentence. Every step that compares sentences uses these functions, so a
sentence and its duplicates always agree.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import unicodedata


# Planes 0, 1 and 14: every combining mark and format character is there (2 and 3 are ideographs, 15 and 16 private
# use); scanning them takes milliseconds at import, all code points a tenth of a second in each screening worker.
def _codes() -> itertools.chain:
    return itertools.chain(range(0x20000), range(0xE0000, 0xF0000))


def _marks() -> str:
    """Every combining mark (Unicode category M) as ranges of a regex class. Python's `\\w` leaves them out, but
    they are letters of their words: the vowel signs of Devanagari, Thai, Tamil or Khmer, Arabic's harakat; read
    as spaces, "กิน" (eat) and "กัน" (together) were one source, and sentences that differed in their vowels were
    one test sentence."""
    ranges: list[list[int]] = []
    for code in _codes():
        if unicodedata.category(chr(code))[0] == "M":
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    return "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in ranges)


def _invisible() -> dict[int, None]:
    """Format characters (Unicode category Cf) that only shape how text is shown: a soft hyphen (`&shy;`, common in
    German web text), zero-width spaces and joiners for line breaking, a byte-order mark, bidi controls. Read as
    spaces they split a word ("set tings"), kept they make another sentence of it: either way a test sentence with
    one came back as new training data. ZWNJ and ZWJ stay: in Persian, Indic scripts and emoji they tell words
    apart."""
    return {code: None for code in _codes() if unicodedata.category(chr(code)) == "Cf" and code not in (0x200C, 0x200D)}


_INVISIBLE = _invisible()
# Punctuation and symbols (and format and control characters): what is left of a sentence is its words.
_NOT_WORD = re.compile(r"[^\w\s%s]+" % _marks())
_NOT_WORD_ASCII = re.compile(r"[^\w\s]+")  # the same for ASCII text (no marks), and faster


def clean(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def match_key(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text)
    # Format characters are not printable, and NFKC neither makes nor removes one: text printable after it has none
    # and skips the translation. Checked before NFKC, French text paid it for every no-break space (5 µs a side).
    if not folded.isprintable():
        folded = unicodedata.normalize("NFKC", text.translate(_INVISIBLE))
    return " ".join(folded.casefold().split())


def key_of(text: str) -> int:
    """A stable 64-bit key (Python's hash() differs between processes): small enough to hold a million of,
    and two different sentences among a million collide with a chance of about 1 in 30 million."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


# The letters of scripts that tell languages apart (Unicode blocks; only the letters in them count, see
# `written_in`). Latin is shared by too many languages to say which, but it does say "not Chinese".
SCRIPT_RANGES = {
    "Latin": "A-Za-z\u00c0-\u024f\u1e00-\u1eff\u2c60-\u2c7f\ua720-\ua7ff\uff21-\uff3a\uff41-\uff5a",
    "Han": "\u2e80-\u2fdf\u3005\u3007\u3021-\u3029\u3038-\u303b\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
           "\U00020000-\U0003134f",
    "Kana": "\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f",
    "Hangul": "\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\uac00-\ud7af\ud7b0-\ud7ff\uffa0-\uffdc",
    "Arabic": "\u0600-\u06ff\u0750-\u077f\u0870-\u08ff\ufb50-\ufdff\ufe70-\ufeff",
    "Cyrillic": "\u0400-\u052f\u1c80-\u1c8f\u2de0-\u2dff\ua640-\ua69f",
    "Devanagari": "\u0900-\u097f\ua8e0-\ua8ff", "Bengali": "\u0980-\u09ff", "Gujarati": "\u0a80-\u0aff",
    "Tamil": "\u0b80-\u0bff", "Telugu": "\u0c00-\u0c7f", "Kannada": "\u0c80-\u0cff", "Malayalam": "\u0d00-\u0d7f",
    "Sinhala": "\u0d80-\u0dff", "Thai": "\u0e00-\u0e7f", "Lao": "\u0e80-\u0eff", "Tibetan": "\u0f00-\u0fff",
    "Myanmar": "\u1000-\u109f", "Georgian": "\u10a0-\u10ff\u1c90-\u1cbf", "Ethiopic": "\u1200-\u139f",
    "Khmer": "\u1780-\u17ff\u19e0-\u19ff", "Hebrew": "\u0590-\u05ff\ufb1d-\ufb4f",
    "Greek": "\u0370-\u03ff\u1f00-\u1fff", "Armenian": "\u0530-\u058f",
}
# Scripts written without spaces between words (Han, kana, Thai, Lao, Khmer, Myanmar): a space beside one of their
# characters is a style guide's choice ("打开 Firefox" / "打开Firefox", "删除 3 个文件"), or punctuation read as one
# ("你好，世界" / "你好世界"), never a word boundary the sentence needs.
_UNSPACED = "".join(SCRIPT_RANGES[name] for name in ("Han", "Kana", "Thai", "Lao", "Khmer", "Myanmar"))
_SPACE_BY_UNSPACED = re.compile(f"(?<=[{_UNSPACED}]) | (?=[{_UNSPACED}])")


def source_form(text: str, matched: str | None = None) -> str:
    """`match_key` (or `matched`, the text's match_key already made) with punctuation and symbols as spaces, and no
    space beside a character of a script written without them; a text of nothing else keeps them ("..." and "→"
    stay apart)."""
    matched = match_key(text) if matched is None else matched
    if matched.isascii():
        return " ".join(_NOT_WORD_ASCII.sub(" ", matched).split()) or matched
    return _SPACE_BY_UNSPACED.sub("", " ".join(_NOT_WORD.sub(" ", matched).split())) or matched


# What `source_key` is, in the reports of the steps that use it: a run validated by an earlier key (before
# punctuation read as spaces) is told apart by it.
SOURCE_KEY = ("blake2b-64 of the source after NFKC, case folding, invisible format characters removed, punctuation "
              "as spaces, whitespace collapsing and no space beside Han, kana, Thai, Lao, Khmer or Myanmar "
              "(tasks.textnorm)")


def source_key(source: str) -> int:
    """What identifies a source sentence across runs and steps for test-set leakage and the split."""
    return key_of(source_form(source))


def bucket(source: str) -> float:
    """A stable number in [0, 1) for a source sentence, the same for all its normalized duplicates."""
    return bucket_of(source_key(source))


def bucket_of(key: int) -> float:
    """`bucket` of the sentence whose `source_key` is `key`."""
    return key / 2**64
