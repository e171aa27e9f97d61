"""sacrebleu scores of a set of translations: BLEU, chrF and TER with their signatures, per-sentence scores,
and the paired bootstrap test that tells a real difference between two systems from test-set luck.

Everything here is computed on text exactly as `as_line` stores it, one sentence per line, so the `sacrebleu`
CLI run on the files in eval/ gives the same numbers:

    sacrebleu test.ref -i test.candidate.hyp -m bleu chrf ter -w 2
    sacrebleu test.ref -i test.base.hyp test.candidate.hyp -m bleu chrf ter --paired-bs -w 2

The bootstrap's seed is sacrebleu's own default (SACREBLEU_SEED=12345), pinned here whatever the environment
says, so the CLI reproduces the p-values too.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator, Sequence

from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.significance import PairedTest

METRICS = ("bleu", "chrf", "ter")
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 12345
DECIMALS = 2


def as_line(text: str) -> str:
    """A sentence as one line of a text file, the way the sacrebleu CLI reads it back (it strips the end)."""
    return text.replace("\r", " ").replace("\n", " ").rstrip()


def make_metrics(target_lang: str) -> dict:
    """The metric objects, keyed like METRICS. BLEU picks its tokenizer from the target language (zh, ja, ko)."""
    return {"bleu": BLEU(trg_lang=target_lang), "chrf": CHRF(), "ter": TER()}


def _rounded(value: float) -> float:
    return round(float(value), DECIMALS)


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str], target_lang: str) -> dict:
    """{"bleu": …, "chrf": …, "ter": …, "signatures": {metric: signature}} for one system."""
    _check_lengths(hypotheses, references)
    result: dict = {"signatures": {}}
    for name, metric in make_metrics(target_lang).items():
        result[name] = _rounded(metric.corpus_score(list(hypotheses), [list(references)]).score)
        result["signatures"][name] = str(metric.get_signature())
    return result


def sentence_scores(hypotheses: Sequence[str], references: Sequence[str], target_lang: str) -> list[dict]:
    """Per-sentence scores; sentence BLEU uses effective order, as `sacrebleu --sentence-level` does."""
    _check_lengths(hypotheses, references)
    metrics = make_metrics(target_lang)
    metrics["bleu"] = BLEU(trg_lang=target_lang, effective_order=True)
    return [{name: _rounded(metric.sentence_score(hyp, [ref]).score) for name, metric in metrics.items()}
            for hyp, ref in zip(hypotheses, references)]


@contextlib.contextmanager
def _pinned_seed() -> Iterator[None]:
    # sacrebleu reads its bootstrap seed from the environment when a test is set up; pin it for that moment.
    # Its INFO lines (one per metric and system) would drown the step's own log, so they are held back too.
    previous = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(BOOTSTRAP_SEED)
    sacrebleu_log = logging.getLogger("sacrebleu")
    level = sacrebleu_log.level
    sacrebleu_log.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        sacrebleu_log.setLevel(level)
        if previous is None:
            os.environ.pop("SACREBLEU_SEED", None)
        else:
            os.environ["SACREBLEU_SEED"] = previous


def paired_bootstrap(baseline: tuple[str, Sequence[str]], system: tuple[str, Sequence[str]],
                     references: Sequence[str], target_lang: str) -> dict:
    """sacrebleu's paired bootstrap test of `system` against `baseline` on every metric.

    Returns {metric: {"baseline": s, "system": s, "delta": system − baseline, "p_value": p,
    "baseline_ci": ±, "system_ci": ±}, "signatures": {metric: signature with the test's settings}}.
    The test is two-sided: p is the chance of a difference this large between two equally good systems.
    """
    _check_lengths(baseline[1], references)
    _check_lengths(system[1], references)
    metrics = make_metrics(target_lang)
    with _pinned_seed():
        test = PairedTest([(baseline[0], list(baseline[1])), (system[0], list(system[1]))], metrics,
                          references=[list(references)], test_type="bs", n_samples=BOOTSTRAP_RESAMPLES)
        signatures, table = test()
    result: dict = {"signatures": {}}
    # sacrebleu names the columns after the metric (BLEU, chrF2, TER), in the order the metrics were given.
    for name, column in zip(metrics, [k for k in table if k != "System"]):
        base, other = table[column]
        result[name] = {"baseline": _rounded(base.score), "system": _rounded(other.score),
                        "delta": _rounded(other.score - base.score), "p_value": round(float(other.p_value), 4),
                        "baseline_ci": _rounded(base.ci), "system_ci": _rounded(other.ci)}
        result["signatures"][name] = str(signatures[column])
    return result


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
