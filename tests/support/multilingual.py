"""The digit-reading task in a second target language, and a tiny model whose vocabulary knows both.

en→nl ("three seven" → "drie zeven") is the same task as en→de with other words, so a tiny model learns
either in seconds; a run that fans out over [de, nl] trains two real models on two real corpora.
"""

from __future__ import annotations

import random
from pathlib import Path

from support.corpora import DE, EN, digit_pairs, write_jsonl
from tasks.train import scratch_model

NL = ["nul", "een", "twee", "drie", "vier", "vijf", "zes", "zeven", "acht", "negen"]
WORDS = {"de": DE, "nl": NL}


def digit_pairs_to(target: str, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """English digit words → the same digits in `target` (de or nl)."""
    index = {word: i for i, word in enumerate(EN)}
    return [(en, " ".join(WORDS[target][index[w]] for w in en.split())) for en, _ in digit_pairs(n, seed)]


def unrelated_pairs(target: str, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Clean-looking pairs whose targets belong to other sources: nothing a model can learn to translate."""
    pairs = digit_pairs_to(target, n, seed)
    targets = [t for _, t in pairs]
    random.Random(seed).shuffle(targets)
    return [(s, t) for (s, _), t in zip(pairs, targets)]


def write_pair_data(root: Path, target: str, pairs) -> Path:
    """One pair's data where a multi-language run reads it: {data_uri}/en-{target}/part.jsonl."""
    return write_jsonl(root / f"en-{target}" / "part.jsonl", pairs, "en", target)


def build_multilingual_digits_model(out_dir: Path) -> Path:
    """An untrained tiny Marian model whose tokenizer knows the English, German and Dutch digit words."""
    texts = [side for t in ("de", "nl") for pair in digit_pairs_to(t, 400, seed=99) for side in pair]
    return scratch_model.build(texts, out_dir, size="tiny")


# The tiny-model recipe that learns the digit task in seconds (the same as tests/e2e/conftest.py's run_conf). Its base
# model is untrained: it cannot read a pair, so the alignment screen is off (tests/tasks/data/test_alignment.py).
TINY_RECIPE = {"alignment_screen": False, "learning_rate": 3e-3, "warmup_steps": 0.1, "max_tokens_per_batch": 512, "num_train_epochs": 100,
               "max_steps": 300, "eval_every_steps": 50, "precision": "fp32", "max_source_length": 32,
               "max_target_length": 32, "num_beams": 2, "min_clean_pairs": 500}
