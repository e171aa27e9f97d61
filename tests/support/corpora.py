"""Small parallel corpora for tests.

The digit-reading task ("three seven one" → "drei sieben eins") is learnable by a tiny model in seconds,
so end-to-end tests can show a real BLEU gain without pretrained weights. Nothing here is demo data: the
demo uses the real human-translated corpora in demo/data/.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

EN = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DE = ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"]


def digit_pairs(n: int, seed: int = 0, min_len: int = 3, max_len: int = 7) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs, seen = [], set()
    while len(pairs) < n:
        digits = [rng.randrange(10) for _ in range(rng.randint(min_len, max_len))]
        en = " ".join(EN[d] for d in digits)
        if en not in seen:
            seen.add(en)
            pairs.append((en, " ".join(DE[d] for d in digits)))
    return pairs


def write_jsonl(path: Path, pairs, src: str = "en", tgt: str = "de") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for s, t in pairs:
            fh.write(json.dumps({"translation": {src: s, tgt: t}}, ensure_ascii=False) + "\n")
    return path


def write_tsv(path: Path, pairs, header: tuple[str, str] | None = ("en", "de")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["\t".join(header)] if header else []) + [f"{s}\t{t}" for s, t in pairs]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
