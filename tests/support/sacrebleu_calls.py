"""Scores computed the plain way, one sacrebleu call per figure: `corpus_score` per metric, `PairedTest` per
comparison, `sentence_score` per sentence. This is what tasks/evaluate/scoring.py must equal (the tests) and
what it is timed against (bench/eval_throughput.py): each call extracts the statistics again."""

from __future__ import annotations

import os

from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.significance import PairedTest

COLUMNS = {"bleu": "BLEU", "chrf": "chrF2", "ter": "TER"}


def metrics(target_lang: str) -> dict:
    from tasks.evaluate.scoring import ter_options  # the options, not the arithmetic, are the project's choice

    return {"bleu": BLEU(trg_lang=target_lang), "chrf": CHRF(), "ter": TER(**ter_options(target_lang))}


def corpus(hypotheses: list[str], references: list[str], target_lang: str) -> dict:
    """metric → sacrebleu's Score, and its signature."""
    out = {}
    for name, metric in metrics(target_lang).items():
        out[name] = (metric.corpus_score(hypotheses, [references]), str(metric.get_signature()))
    return out


def sentences(hypotheses: list[str], references: list[str], target_lang: str) -> list[dict]:
    """Per sentence: metric → full-precision score (sentence BLEU with effective order, as the CLI's)."""
    chosen = {**metrics(target_lang), "bleu": BLEU(trg_lang=target_lang, effective_order=True)}
    return [{name: metric.sentence_score(hyp, [ref]).score for name, metric in chosen.items()}
            for hyp, ref in zip(hypotheses, references)]


def paired_bootstrap(baseline: list[str], system: list[str], references: list[str], target_lang: str) -> dict:
    """metric → (baseline Result, system Result, signature) from sacrebleu's PairedTest, seed 12345, 1000
    resamples: the CLI's `--paired-bs`."""
    previous = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = "12345"
    try:
        test = PairedTest([("baseline", baseline), ("system", system)], metrics(target_lang),
                          references=[references], test_type="bs", n_samples=1000)
        signatures, table = test()
    finally:
        if previous is None:
            os.environ.pop("SACREBLEU_SEED", None)
        else:
            os.environ["SACREBLEU_SEED"] = previous
    return {name: (*table[column], str(signatures[column])) for name, column in COLUMNS.items()}
