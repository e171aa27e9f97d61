"""The pipeline's own files of pairs: JSON Lines of `{"translation": {src: ..., tgt: ...}}`, run_translation.py's
layout. clean.jsonl, the splits and the frozen test set are all written this way (validate writes extra
`file` and `line` fields, which readers ignore)."""

from __future__ import annotations

import json
from pathlib import Path

Pair = tuple[str, str]


def read_pairs(path: Path, src: str, tgt: str) -> tuple[list[str], list[str]]:
    """(sources, targets) of a pairs file, in file order."""
    sources, targets = [], []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            pair = json.loads(line)["translation"]
            sources.append(pair[src])
            targets.append(pair[tgt])
    return sources, targets


def write_pairs(path: Path, pairs: list[Pair], src: str, tgt: str) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for source, target in pairs:
            fh.write(json.dumps({"translation": {src: source, tgt: target}}, ensure_ascii=False) + "\n")
    return path
