"""evaluate: translate the test split with the base model and the candidate, then score both with sacrebleu.

Both models decode with identical settings (beam size, length limit, batching), and every score is stored
with its sacrebleu signature, so numbers from different runs are comparable and can be recomputed with the
`sacrebleu` CLI from the text files written to eval/.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from tasks import families, split, storage, train
from tasks.config import RunConfig

log = logging.getLogger(__name__)

EVAL = "eval"
SCORES = "scores.json"


def translate(model_dir: str, sources: list[str], *, source_lang: str, target_lang: str, num_beams: int,
              max_length: int, batch_size: int) -> list[str]:
    """Beam-search translations in input order; sentences are decoded longest first to waste less padding."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir)
    family = families.prepare(model, tokenizer, source_lang, target_lang)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        model = model.to(torch.bfloat16)
    model = model.to(device).eval()
    texts = family.source_texts(sources)
    # The forced target-language token is not always flagged special (M2M100), so drop it explicitly.
    drop = {family.generate_kwargs.get("forced_bos_token_id")} - {None}
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    hypotheses: list[str] = [""] * len(texts)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                              max_length=max_length).to(device)
            out = model.generate(**batch, num_beams=num_beams, max_new_tokens=max_length,
                                 **family.generate_kwargs)
            ids = [[t for t in row if t not in drop] for row in out.tolist()]
            for i, text in zip(idx, tokenizer.batch_decode(ids, skip_special_tokens=True)):
                hypotheses[i] = text.strip()
    return hypotheses


def score(hypotheses: list[str], references: list[str]) -> dict:
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(), CHRF()
    b, c = bleu.corpus_score(hypotheses, [references]), chrf.corpus_score(hypotheses, [references])
    return {"bleu": round(b.score, 2), "chrf": round(c.score, 2),
            "signatures": {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature())}}


def result(config: RunConfig) -> dict | None:
    """The stored scores, or None when evaluation has not finished for this run."""
    uri = config.uri(EVAL, SCORES)
    return storage.read_json(uri) if storage.exists(uri) else None


def run(config: RunConfig) -> dict:
    if (done := result(config)) is not None:
        log.info("evaluate already done for this run")
        return done
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        test = storage.download(split.split_uri(config, "test"), scratch / "test.jsonl")
        sources, references = train.read_pairs(test, config.source_lang, config.target_lang)
        candidate_dir = str(storage.local_dir_for(config.uri(train.MODEL), scratch / "candidate"))
        decoding = {"num_beams": config.num_beams, "max_length": config.max_target_length,
                    "batch_size": config.eval_batch_size, "order": "longest source first"}
        log.info("decoding %d test sentences with %s", len(sources), decoding)
        results = {"test_sentences": len(sources), "decoding": decoding}
        files = {"test.src": sources, "test.ref": references}
        for role, model in (("base", config.base_model), ("candidate", candidate_dir)):
            started = time.monotonic()
            hyps = translate(model, sources, source_lang=config.source_lang, target_lang=config.target_lang,
                             num_beams=config.num_beams, max_length=config.max_target_length,
                             batch_size=config.eval_batch_size)
            seconds = time.monotonic() - started
            results[role] = {**score(hyps, references), "model": config.base_model if role == "base" else
                             config.uri(train.MODEL), "seconds": round(seconds, 1),
                             "sentences_per_s": round(len(sources) / max(seconds, 1e-9), 1)}
            files[f"{role}.hyp"] = hyps
            log.info("%-9s BLEU %6.2f  chrF %6.2f  (%.1fs)", role, results[role]["bleu"],
                     results[role]["chrf"], seconds)
    for name, lines in files.items():
        storage.write_text(config.uri(EVAL, name), "".join(line.replace("\n", " ") + "\n" for line in lines))
    storage.write_json(config.uri(EVAL, SCORES), results)  # last: its presence marks the step done
    return results
