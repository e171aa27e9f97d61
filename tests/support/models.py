"""Tiny models built locally in seconds: no weights are downloaded in tests."""

from __future__ import annotations

from pathlib import Path

from support.corpora import digit_pairs
from tasks import scratch_model


def build_digits_model(out_dir: Path) -> Path:
    """An untrained tiny Marian model whose tokenizer knows the digit-reading task's words."""
    texts = [side for pair in digit_pairs(400, seed=99) for side in pair]
    return scratch_model.build(texts, out_dir, size="tiny")
