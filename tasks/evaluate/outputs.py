"""What a model's test outputs look like, beyond their score: signs of a degenerate model.

A model can beat a base that scores 0 while answering most inputs with the same line, nothing, a copy of the
source, or a word repeated until the length cap. BLEU does not see that; these figures do, and the gate's
`degenerate_outputs` check refuses a candidate that shows it (tasks/evaluate/gate.py):

- distinct: distinct outputs / distinct sources (a constant model scores near 0);
- empty: outputs with no text;
- source_copies: outputs equal to their source (untranslated), compared after collapsing spaces;
- runaway: outputs in which a run of 1 to 4 words repeats at least RUNAWAY_REPEATS times in a row, or, for
  scripts written without spaces (Chinese, Japanese, Thai), a run of 1 to 4 characters with a letter in it repeats
  at least 2 × RUNAWAY_REPEATS times in a row (`的的的…`, `质量质量…`).
"""

from __future__ import annotations

import re
from typing import Sequence

RUNAWAY_REPEATS = 4
# A run of 1–4 words (\S+ separated by single spaces), then that same run RUNAWAY_REPEATS − 1 more times.
_RUNAWAY = re.compile(r"(?:^| )((?:\S+ ){0,3}\S+)(?: \1){%d,}(?= |$)" % (RUNAWAY_REPEATS - 1))


def _words(text: str) -> str:
    return " ".join(text.split())


# A run of 1–4 characters (no space), then that same run at least 2 × RUNAWAY_REPEATS − 1 more times.
_RUNAWAY_CHARACTERS = re.compile(r"(\S{1,4}?)\1{%d,}" % (2 * RUNAWAY_REPEATS - 1))


def is_runaway(text: str) -> bool:
    words = _words(text)
    return _RUNAWAY.search(words) is not None or \
        any(any(c.isalpha() for c in run[1]) for run in _RUNAWAY_CHARACTERS.finditer(words))


def statistics(hypotheses: Sequence[str], sources: Sequence[str]) -> dict:
    """Shares (0–1, rounded to 4 places) of the degenerate signs above over one test set."""
    if len(hypotheses) != len(sources):
        raise ValueError(f"{len(hypotheses)} outputs for {len(sources)} sources")
    n = max(len(hypotheses), 1)
    normalized = [_words(h) for h in hypotheses]
    return {
        "outputs": len(hypotheses),
        "distinct": round(len(set(normalized)) / max(len({_words(s) for s in sources}), 1), 4),
        "empty": round(sum(not h for h in normalized) / n, 4),
        "source_copies": round(sum(h == _words(s) and bool(h) for h, s in zip(normalized, sources)) / n, 4),
        "runaway": round(sum(is_runaway(h) for h in normalized) / n, 4),
    }


def identical_share(hypotheses: Sequence[str], others: Sequence[str]) -> float:
    """The share of test sentences on which two models wrote the same output."""
    return round(sum(_words(a) == _words(b) for a, b in zip(hypotheses, others)) / max(len(hypotheses), 1), 4)
