"""Small parallel corpora for tests.

The digit-reading task ("three seven one" → "drei sieben eins") is learnable by a tiny model in seconds,
so end-to-end tests can show a real BLEU gain without pretrained weights. The demo uses the real human-translated
corpora in demo/data/; `demo_catalog_pairs` samples them for the alignment screen's measurements.
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


def write_csv(path: Path, pairs, header: tuple[str, str] | None = ("en", "de"), delimiter: str = ",") -> Path:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        if header:
            writer.writerow(header)
        writer.writerows(pairs)
    return path


def write_tmx(path: Path, pairs, src: str = "en-US", tgt: str = "de-DE") -> Path:
    """A TMX 1.4 memory as CAT tools export it, with the text escaped by a real XML serializer."""
    from xml.sax.saxutils import escape

    units = "".join(f'<tu><tuv xml:lang="{src}"><seg>{escape(s)}</seg></tuv>'
                    f'<tuv xml:lang="{tgt}"><seg>{escape(t)}</seg></tuv></tu>\n' for s, t in pairs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<tmx version="1.4">\n'
                    f'<header srclang="{src}" datatype="plaintext" segtype="sentence" adminlang="en" '
                    'creationtool="tests" creationtoolversion="1" o-tmf="tests"/>\n'
                    f"<body>\n{units}</body>\n</tmx>\n", encoding="utf-8")
    return path


def po_catalog(pairs, language: str = "de"):
    """A polib catalog of the pairs (msgid = source, msgstr = target)."""
    import polib

    catalog = polib.POFile(wrapwidth=0)
    catalog.metadata = {"Content-Type": "text/plain; charset=UTF-8", "Language": language,
                        "MIME-Version": "1.0", "Content-Transfer-Encoding": "8bit"}
    for s, t in pairs:
        catalog.append(polib.POEntry(msgid=s, msgstr=t))
    return catalog


def write_po(path: Path, pairs, language: str = "de") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    po_catalog(pairs, language).save(str(path))
    return path


def write_mo(path: Path, pairs, language: str = "de") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    po_catalog(pairs, language).save_as_mofile(str(path))
    return path


def write_parquet(path: Path, pairs, src: str = "en", tgt: str = "de") -> Path:
    """A Hugging Face dataset's layout: one `translation` struct column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"translation": [{src: s, tgt: t} for s, t in pairs]}), path)
    return path


def rotate_targets(pairs, share, seed=1):
    """`share` of the pairs get the target of the next one of them by source length: plausible, similar-length,
    wrong. Returns the new pairs and the rotated indices."""
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(pairs)), int(share * len(pairs))), key=lambda i: len(pairs[i][0]))
    out = list(pairs)
    for a, b in zip(chosen, chosen[1:] + chosen[:1]):
        out[a] = (pairs[a][0], pairs[b][1])
    return out, set(chosen)


def demo_catalog_pairs(limit=3000):
    """`limit` distinct pairs of the demo's catalogs (sources of at most 100 characters), in a fixed shuffled order."""
    pairs, seen = [], set()
    for path in sorted((Path(__file__).resolve().parents[2] / "demo" / "data" / "domain").glob("*.jsonl")):
        for line in path.open(encoding="utf-8"):
            pair = json.loads(line)["translation"]
            key = (pair["en"], pair["de"])
            if key not in seen and pair["en"].strip() and pair["de"].strip() and len(pair["en"]) <= 100:
                seen.add(key)
                pairs.append(key)
    random.Random(0).shuffle(pairs)
    return pairs[:limit]
