"""The evaluation report for people: report.md (+ report.png) in the run directory with the score table, the
gate's checks, sentence-level differences and sample translations.

Everything is read back from what the steps stored, so the report can be (re)written at any time after the
gate and shows exactly the numbers the gate used.
"""

from __future__ import annotations

import io
import json
import logging
import re

from tasks import cost, layout
from tasks.config import RunConfig
from tasks.evaluate import scoring
from tasks.io import storage

log = logging.getLogger(__name__)

SAMPLES = 10
LENGTH_BUCKETS = ((1, 5), (6, 10), (11, 20), (21, 40), (41, None))  # source words


def _read_lines(config: RunConfig, name: str) -> list[str]:
    """One item per line as eval/'s files are written and the sacrebleu CLI reads them: ended by \\n only
    (`str.splitlines` also splits at U+2028, U+0085 and others a translation may hold, and pairs would shift)."""
    text = storage.read_text(config.uri(name))
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n") if text else []


def _read_sentence_scores(config: RunConfig, role: str) -> list[dict]:
    return [json.loads(line) for line in _read_lines(config, layout.sentence_scores(layout.TEST, role))]


def changed_most(sources, references, base, candidate, base_scores, candidate_scores, n=SAMPLES) -> list[dict]:
    """The `n` sentences whose output changed and whose sentence chrF moved most, largest change first."""
    rows = [{"source": s, "reference": r, "base": b, "candidate": c,
             "delta_chrf": round(cs["chrf"] - bs["chrf"], 2)}
            for s, r, b, c, bs, cs in zip(sources, references, base, candidate, base_scores, candidate_scores)
            if b != c]
    return sorted(rows, key=lambda row: -abs(row["delta_chrf"]))[:n]


def bleu_tokenizer(scores: dict, target_lang: str) -> str:
    """The tokenizer BLEU was scored with, as sacrebleu's CLI names it: the one the candidate's signature records
    (scores made before BLEU_TOKENIZERS, or by a later table, keep theirs), else the target language's."""
    signature = ((scores.get("candidate") or {}).get("signatures") or {}).get("bleu") or ""
    found = re.search(r"(?:^|\|)tok:([^|]+)", signature)
    if found is None:
        return scoring.BLEU_TOKENIZERS.get(target_lang, "13a")
    recorded = found.group(1)  # ja-mecab and ko-mecab add their versions: "ja-mecab-0.996-IPA"
    return next((name for name in ("ja-mecab", "ko-mecab") if recorded.startswith(name)), recorded)


def bleu_by_length(sources: list[str], references: list[str], systems: dict[str, list[str]],
                   target_lang: str, tokenizer: str | None = None) -> list[dict]:
    """Corpus BLEU of each system within buckets of source length (in words), with `tokenizer` (`bleu_tokenizer`)."""
    out = []
    for low, high in LENGTH_BUCKETS:
        idx = [i for i, s in enumerate(sources) if len(s.split()) >= low and (high is None or len(s.split()) <= high)]
        if not idx:
            continue
        row = {"bucket": f"{low}–{high}" if high else f"{low}+", "sentences": len(idx)}
        for role, hyps in systems.items():
            row[role] = round(scoring.bleu(target_lang, tokenizer).corpus_score([hyps[i] for i in idx],
                                                                     [[references[i] for i in idx]]).score, 2)
        out.append(row)
    return out


def plot(deltas: dict[str, list[float]], by_length: list[dict], roles: list[str]) -> bytes:
    """PNG: histogram of sentence chrF differences, and BLEU by source length."""
    import matplotlib

    matplotlib.use("Agg")  # no display in workers and containers
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, values in deltas.items():
        left.hist(values, bins=41, range=(-100, 100), alpha=0.6, label=label)
    left.axvline(0, color="black", linewidth=0.8)
    left.set(title="Sentence chrF difference", xlabel="Δ chrF per sentence", ylabel="sentences")
    left.legend()
    width = 0.8 / max(len(roles), 1)
    for k, role in enumerate(roles):
        right.bar([i + k * width for i in range(len(by_length))], [row[role] for row in by_length], width,
                  label=role)
    right.set_xticks([i + width * (len(roles) - 1) / 2 for i in range(len(by_length))],
                     [f"{row['bucket']}\n(n={row['sentences']})" for row in by_length])
    right.set(title="BLEU by source length (words)", ylabel="BLEU")
    right.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _cell(text: str) -> str:
    return text.replace("|", "\\|") or "∅"


def write_report(config: RunConfig) -> str:
    """Write report.md and report.png to the run directory; returns the report's URI."""
    scores = storage.read_json(config.uri(layout.SCORES))
    decision = storage.read_json(config.uri(layout.GATE))
    roles = [r for r in layout.ROLES if scores.get(r)]
    sources = _read_lines(config, layout.eval_file(layout.TEST, "src"))
    references = _read_lines(config, layout.eval_file(layout.TEST, "ref"))
    hyps = {role: _read_lines(config, layout.hypotheses(layout.TEST, role)) for role in roles}
    sentence = {role: _read_sentence_scores(config, role) for role in roles}
    deltas = {f"candidate − {other}": [c["chrf"] - o["chrf"] for c, o in zip(sentence["candidate"], sentence[other])]
              for other in roles if other != "candidate"}
    by_length = bleu_by_length(sources, references, hyps, config.target_lang,
                               bleu_tokenizer(scores, config.target_lang))
    storage.write_bytes(config.uri(layout.REPORT_PLOT), plot(deltas, by_length, roles))
    samples = changed_most(sources, references, hyps["base"], hyps["candidate"], sentence["base"],
                           sentence["candidate"])
    text = render(config, scores, decision, by_length, samples,
                  training=storage.read_json_or(config.uri(layout.TRAIN_REPORT)) or {},
                  validation=storage.read_json_or(config.uri(layout.VALIDATION_REPORT)) or {},
                  launched=storage.read_record(config.uri(layout.LAUNCHES)))
    storage.write_text(config.uri(layout.REPORT), text)
    log.info("report: %s", config.uri(layout.REPORT))
    return config.uri(layout.REPORT)


def _kept(scores: dict) -> str:
    """Which models' translations were kept from an earlier run instead of decoded (tasks/evaluate/reuse.py)."""
    kept = [f"the {role}'s from `{scores[role]['reused_from']}`" for role in layout.ROLES
            if (scores.get(role) or {}).get("reused_from")]
    return f" Kept from an earlier run with the same model, sentences, settings and engine: {', '.join(kept)}." \
        if kept else ""


def render(config: RunConfig, scores: dict, decision: dict, by_length: list[dict], samples: list[dict], *,
           training: dict, validation: dict, launched: dict) -> str:
    sig, dec = scores["candidate"]["signatures"], scores["decoding"]
    champion = scores.get("champion")
    lines = [
        f"# {config.dag_id} · run `{config.run_id}`: {decision['decision'].upper()}", "",
        f"- base model: `{scores['base']['model']}`",
        f"- candidate: `{scores['candidate']['model']}`",
        "- champion: " + (f"`{champion['model']}`" if champion else
                           f"none ({(scores.get('champion_lookup') or {}).get('reason', 'not looked up')})"),
        f"- data: `{config.data_uri}` ({config.source_lang}→{config.target_lang})", "",
        f"## Scores on the domain test set ({scores['test_sentences']} sentences)", "",
        scoring.score_table(scores), "",
        "± is the half-width of the 95% confidence interval from sacrebleu's paired bootstrap "
        f"({scores['bootstrap']['resamples']} resamples, seed {scores['bootstrap']['seed']}).", "",
        f"Signatures: BLEU `{sig['bleu']}` · chrF `{sig['chrf']}` · TER `{sig['ter']}`", "",
        f"Decoding: {dec['engine']} on {dec['device']} ({dec['precision']}), beam {dec['num_beams']}, "
        f"{dec['length_limit']}, batches of ≤ {dec['max_sentences']} sentences / {dec['max_tokens']} tokens "
        "sorted by length; speed: " + (", ".join(f"{r} {scores[r]['sentences_per_s']} sentences/s"
                                                 for r in layout.ROLES if (scores.get(r) or {}).get("sentences_per_s"))
                                       or "not measured") + "." + _kept(scores), "",
    ]
    if general := scores.get("general"):
        lines += [f"## General-domain test set ({general['sentences']} sentences): forgetting", "",
                  scoring.score_table(general, ("base", "candidate")), ""]
    lines += [f"## Promotion gate: {decision['decision'].upper()}", "",
              "| check | value | threshold | verdict | reason |", "|---|---:|---:|---|---|"]
    for c in decision["checks"]:
        value = "—" if c["value"] is None else c["value"]
        lines.append(f"| {c['name']} | {value} | {c['threshold']} | {'PASS' if c['passed'] else 'FAIL'} | "
                     f"{_cell(c['reason'])} |")
    lines += ["", "## Sentence-level differences", "",
              f"![sentence chrF differences and BLEU by length]({layout.REPORT_PLOT})", "",
              "| source words | sentences | " + " | ".join(r for r in layout.ROLES if r in by_length[0]) + " |",
              "|---|---:|" + "---:|" * sum(r in by_length[0] for r in layout.ROLES)]
    for row in by_length:
        lines.append(f"| {row['bucket']} | {row['sentences']} | "
                     + " | ".join(f"{row[r]:.2f}" for r in layout.ROLES if r in row) + " |")
    lines += ["", f"## Where the candidate changed the output most ({len(samples)} sentences, by |Δ chrF|)", ""]
    for k, s in enumerate(samples, 1):
        lines += [f"{k}. Δ chrF {s['delta_chrf']:+.2f}", f"   - source: {s['source']}",
                  f"   - reference: {s['reference']}", f"   - base: {s['base']}", f"   - candidate: {s['candidate']}"]
    spent = [f"- {what}: {line}" for what, line in (("screening", cost.screening(validation)),
                                                    ("training", cost.training(training)),
                                                    ("decoding", cost.decoding(scores)),
                                                    ("the steps, from launch to end", cost.launches(launched)))
             if line]
    if spent:
        lines += ["", "## What this run cost", "", *spent]
    tokenizer = bleu_tokenizer(scores, config.target_lang)
    flags = f" -tok {tokenizer}" if tokenizer != "13a" else ""  # the CLI's BLEU tokenizes with 13a unless told
    ter = ((scores.get("candidate") or {}).get("signatures") or {}).get("ter") or ""
    flags += " --ter-normalized --ter-asian-support" if "asian:yes" in ter else ""  # scoring.ter_options
    lines += ["", "## Recompute any number", "", "From the run directory's `eval/` folder:", "", "```sh",
              f"sacrebleu test.ref -i test.candidate.hyp -m bleu chrf ter{flags} -w 2",
              f"sacrebleu test.ref -i test.base.hyp test.candidate.hyp -m bleu chrf ter{flags} --paired-bs -w 2",
              "```", ""]
    return "\n".join(lines)
