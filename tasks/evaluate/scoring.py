"""sacrebleu scores of a set of translations: BLEU, chrF and TER with their signatures, per-sentence scores,
and the paired bootstrap test that tells a real difference between two systems from test-set luck.

Everything here is computed on text exactly as `as_line` stores it, one sentence per line, so the `sacrebleu`
CLI run on the files in eval/ gives the same numbers:

    sacrebleu test.ref -i test.candidate.hyp -m bleu chrf ter -w 2
    sacrebleu test.ref -i test.base.hyp test.candidate.hyp -m bleu chrf ter --paired-bs -w 2

(with `-tok <tokenizer>` where BLEU's signature names another tokenizer than 13a: `BLEU_TOKENIZERS`; and with
`--ter-normalized --ter-asian-support` for Chinese and Japanese: `ter_options`).

The bootstrap draws its resamples as sacrebleu does, with sacrebleu's own default seed (SACREBLEU_SEED=12345)
whatever the environment says, so the CLI reproduces the p-values and intervals too. Each system's per-sentence
statistics are extracted once and serve its corpus scores, its sentence scores and every test it takes part in
(`TestSet`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.significance import _compute_p_value, estimate_ci

METRICS = ("bleu", "chrf", "ter")
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 12345
RESAMPLE_CHUNK = 100  # resamples drawn and summed at a time (divides BOOTSTRAP_RESAMPLES)
DECIMALS = 2


def as_line(text: str) -> str:
    """A sentence as one line of a text file, the way the sacrebleu CLI reads it back (it strips the end)."""
    return text.replace("\r", " ").replace("\n", " ").rstrip()


# BLEU's tokenizer for a target language that 13a cannot split into words. sacrebleu picks one from a language
# code only for "zh", "ja" and "ko", and 13a for every other code: for the ISO 639-2/3 codes the config also takes
# (zho, jpn, kor) and for languages written without spaces between words (Thai, Lao, Khmer, Burmese), 13a makes a
# token of each phrase, and BLEU comes down to exact matches of whole phrases, blind to most of what a model
# changes. Those are scored on characters (sacrebleu's flores200 tokenizer would have to download its model).
BLEU_TOKENIZERS = {**dict.fromkeys(("zh", "zho", "chi", "cmn", "yue", "wuu", "lzh"), "zh"),
                   **dict.fromkeys(("ja", "jpn"), "ja-mecab"), **dict.fromkeys(("ko", "kor"), "ko-mecab"),
                   **dict.fromkeys(("th", "tha", "lo", "lao", "km", "khm", "my", "mya", "bur"), "char")}


# TER splits words on whitespace unless it normalizes: Chinese and Japanese are written without spaces, so a sentence
# was one "word" and a near-perfect system (one character dropped a sentence) scored TER 90.9, in report.md and in
# the model card. For them TER normalizes and splits Asian characters (the CLI's --ter-normalized
# --ter-asian-support): the same system scores 7.7. sacrebleu has no such option for Thai, Lao, Khmer or Burmese.
TER_ASIAN = ("zh", "ja-mecab")


def ter_options(target_lang: str) -> dict:
    """TER's options for the target language: normalized, with Asian characters split, for Chinese and Japanese."""
    return {"normalized": True, "asian_support": True} if BLEU_TOKENIZERS.get(target_lang) in TER_ASIAN else {}


class ScoringUnavailable(RuntimeError):
    """BLEU cannot tokenize the target language with what is installed here."""


def bleu(target_lang: str, tokenizer: str | None = None, **options) -> BLEU:
    """sacrebleu's BLEU with `tokenizer`, else the target language's (BLEU_TOKENIZERS, else 13a)."""
    tokenizer = tokenizer or BLEU_TOKENIZERS.get(target_lang, BLEU.TOKENIZER_DEFAULT)
    try:
        return BLEU(tokenize=tokenizer, trg_lang=target_lang, **options)
    except (ImportError, RuntimeError) as err:  # ja-mecab and ko-mecab need sacrebleu's extras
        raise ScoringUnavailable(f"BLEU for target language {target_lang!r} needs the {tokenizer} tokenizer, which "
                                 f"cannot run here ({type(err).__name__}: {str(err).strip()})") from None


def make_metrics(target_lang: str, references: Sequence[str]) -> dict:
    """The metric objects, keyed like METRICS, with the references prepared (tokenized, their n-grams counted).
    BLEU's tokenizer follows the target language (`bleu`)."""
    documents = [list(references)]
    return {"bleu": bleu(target_lang, references=documents), "chrf": CHRF(references=documents),
            "ter": TER(references=documents, **ter_options(target_lang))}


def _rounded(value: float) -> float:
    return round(float(value), DECIMALS)


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str], target_lang: str) -> dict:
    """{"bleu": …, "chrf": …, "ter": …, "signatures": {metric: signature}} for one system."""
    return TestSet(references, target_lang).system(hypotheses).corpus_scores()


class TestSet:
    """One test set's references, prepared once for every metric, and the bootstrap's resamples of it.

    Each system's per-sentence statistics are extracted once (`system`), and its corpus scores, sentence scores
    and bootstrap resamples are all computed from them: the same arithmetic as sacrebleu's `corpus_score`,
    `sentence_score` and `PairedTest`, which extract them again for every call (TER's edit distances most of the
    time). tests/tasks/evaluate/test_scoring.py holds every figure equal to sacrebleu's own calls."""

    __test__ = False  # not a pytest class

    def __init__(self, references: Sequence[str], target_lang: str):
        _check_lengths(references, references)
        self.references = list(references)
        self.metrics = make_metrics(target_lang, self.references)
        # Sentence BLEU uses effective order, as `sacrebleu --sentence-level` does; its statistics are the same.
        self.sentence_bleu = bleu(target_lang, effective_order=True)
        self._counts: np.ndarray | None = None

    def system(self, hypotheses: Sequence[str]) -> "System":
        _check_lengths(hypotheses, self.references)
        return System(self, {name: metric._extract_corpus_statistics(list(hypotheses), None)
                             for name, metric in self.metrics.items()})

    def resample_counts(self) -> np.ndarray:
        """How often each sentence is drawn in each bootstrap resample: sacrebleu's draws (the same seeded
        generator; drawn RESAMPLE_CHUNK resamples at a time, which gives the same draws as its one call), as a
        resamples × sentences matrix of float32 counts (whole numbers below 2**24: exact), so a resample's
        statistics are one product. About 4 bytes × 1,000 × the sentences: 80 MB for 20,000."""
        if self._counts is None:
            size = len(self.references)
            rng = np.random.default_rng(BOOTSTRAP_SEED)
            self._counts = np.empty((BOOTSTRAP_RESAMPLES, size), dtype=np.float32)
            for start in range(0, BOOTSTRAP_RESAMPLES, RESAMPLE_CHUNK):
                for row, drawn in enumerate(rng.choice(size, size=(RESAMPLE_CHUNK, size), replace=True), start):
                    self._counts[row] = np.bincount(drawn, minlength=size)
        return self._counts

    def paired_bootstrap(self, baseline: tuple[str, "System"], system: tuple[str, "System"]) -> dict:
        """sacrebleu's paired bootstrap test of `system` against `baseline` on every metric.

        Returns {metric: {"baseline": s, "system": s, "delta": system − baseline, "p_value": p,
        "baseline_ci": ±, "system_ci": ±}, "signatures": {metric: signature with the test's settings}}.
        p is one-sided, in the direction of the observed difference: about the chance that two equally good
        systems differ this much that way (measured: between equally good systems, p < 0.05 in 11 % of trials,
        5.6 % with a gain).
        """
        result: dict = {"signatures": {}}
        for name, metric in self.metrics.items():
            base, other = baseline[1].score(name), system[1].score(name)
            base_resamples, other_resamples = baseline[1].resampled(name), system[1].resampled(name)
            differences = np.abs(other_resamples - base_resamples)
            p_value = _compute_p_value(differences - differences.mean(), abs(base.score - other.score))
            result[name] = {"baseline": _rounded(base.score), "system": _rounded(other.score),
                            "delta": _rounded(other.score - base.score), "p_value": round(float(p_value), 4),
                            "baseline_ci": _rounded(estimate_ci(base_resamples)[1]),
                            "system_ci": _rounded(estimate_ci(other_resamples)[1])}
            signature = metric.get_signature()
            signature.update("seed", str(BOOTSTRAP_SEED))
            signature.update("bs", BOOTSTRAP_RESAMPLES)
            result["signatures"][name] = str(signature)
        return result


class System:
    """One system's per-sentence statistics on a TestSet, for every metric, and what is computed from them."""

    def __init__(self, test_set: TestSet, statistics: dict[str, list]):
        self.test_set, self.statistics = test_set, statistics
        self._resampled: dict[str, np.ndarray] = {}

    def score(self, name: str):
        return self.test_set.metrics[name]._aggregate_and_compute(self.statistics[name])

    def corpus_scores(self) -> dict:
        result: dict = {"signatures": {}}
        for name, metric in self.test_set.metrics.items():
            result[name] = _rounded(self.score(name).score)
            result["signatures"][name] = str(metric.get_signature())
        return result

    def sentence_scores(self) -> list[dict]:
        metrics = {**self.test_set.metrics, "bleu": self.test_set.sentence_bleu}
        return [{name: _rounded(metrics[name]._aggregate_and_compute([self.statistics[name][i]]).score)
                 for name in METRICS} for i in range(len(self.test_set.references))]

    def resampled(self, name: str) -> np.ndarray:
        """The metric's score on each bootstrap resample, from the resample's statistics summed exactly (float64)
        and handed over in float32, as sacrebleu hands its float32 sums over. The statistics are whole numbers, so
        the two sums are the same while they stay below 2**24 (a test set of some 150,000 sentences passes that
        in chrF's character counts; there sacrebleu's float32 sums round, these do not, and the scores may differ
        in the fifth decimal)."""
        if name not in self._resampled:
            metric, counts = self.test_set.metrics[name], self.test_set.resample_counts()
            statistics = np.array(self.statistics[name], dtype=np.float64)
            sums = np.concatenate([counts[start:start + RESAMPLE_CHUNK].astype(np.float64) @ statistics
                                   for start in range(0, len(counts), RESAMPLE_CHUNK)])
            self._resampled[name] = np.array([metric._compute_score_from_stats(row).score
                                              for row in sums.astype(np.float32)])
        return self._resampled[name]


def _check_lengths(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    if not references:
        raise ValueError("nothing to score: no references")


def score_table(scores: dict, roles: Sequence[str] = ("base", "candidate", "champion"),
                labels: dict[str, str] | None = None) -> str:
    """A markdown table of BLEU, chrF and TER per model role (TER: lower is better), used by report.md and the
    model card. `scores[role]` holds the metrics and optionally "ci": {metric: half-width of the bootstrap 95%
    confidence interval}; a missing role (no champion yet) renders as "n/a". `labels` renames rows."""
    lines = ["| model | BLEU | chrF | TER (lower is better) |", "|---|---:|---:|---:|"]
    for role in roles:
        row = scores.get(role)
        cells = []
        for name in METRICS:
            if not row or row.get(name) is None:
                cells.append("n/a")
                continue
            ci = (row.get("ci") or {}).get(name)
            cells.append(f"{row[name]:.2f}" + (f" ± {ci:.2f}" if ci is not None else ""))
        lines.append(f"| {(labels or {}).get(role, role)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
