"""Evaluation speed: the project's decoding against the seed recipe's evaluation, on the same model and the
same sentences, in one run.

- seed: `Seq2SeqTrainer.predict` with `predict_with_generate`, batch 16, beam 4 (the seed document's recipe;
  its generation length cap is set to the project's, so both may write equally long outputs).
- transformers: the project's `TransformersDecoder` (length-sorted token-budget batches, a length limit per
  batch, beam search that stops when 4 hypotheses have finished, bf16 on GPU): the reference for the BLEU
  delta, because it searches exactly as the project's engine does.
- project: what the evaluate step uses (`decode_engine=auto`: CTranslate2 fp32 on CPU, bf16 on GPU), after
  converting the model inside the run as the evaluate step does (conversion time is reported apart).

Only decoding is timed on every path; loading and conversion are reported separately.

By default the model is the tests' tiny Marian model trained (here, cached in .cache/bench/) to read digit
strings of 3–7 digits, and the test set holds 1000 strings of 3–12 digits, so some outputs are right and
some degenerate. No pretrained weights can be downloaded here, and training anything larger on 2 CPU cores
takes hours. A 0.4M-parameter model overstates the engine's advantage (transformers' per-step Python work
dominates), so measure production figures with `--model DIR --test FILE.jsonl` on a real model such as a
snapshot of Helsinki-NLP/opus-mt-en-de. `--tiny` is a seconds-long smoke run whose figures mean nothing.

`--compare-sentences 1024` decodes again with the project's engine at that many sentences a batch (the run
config's `eval_batch_size`, 256 by default; the token budget widened to let them through) and reports its speed,
ratio and outputs identical to the reference under `by_batch_sentences`. On a GPU, beam search is paced by the
host (a read of the device at each decoding step), so fewer, larger batches may decode faster.

Scoring is timed too (`scoring`): the three paths' outputs scored as the evaluate step scores a base model, a
candidate and a champion (BLEU, chrF and TER per system and per sentence, two paired bootstrap tests), by the
step's scoring (tasks/evaluate/scoring.py: each system's statistics extracted once) and by one sacrebleu call per
figure (tests/support/sacrebleu_calls.py, how the step scored before 2026-12-06), with whether every figure is
the same. On a GPU this CPU work is time the evaluate step holds the GPU for.

The decoding's figures are printed as a JSON line before the scoring and batch comparisons run, then again with
them: a comparison that fails or runs past bench/gpu.py's limit leaves them. The last line of stdout is one JSON
object: device, seed_sentences_per_s, project_sentences_per_s, ratio
(project ÷ seed speed), project_engine with engine_fallback (why `auto` passed over CTranslate2, if it did: on a
machine without it, or without cuBLAS 12 on a GPU, the project's figures are the fallback's),
bleu_delta_vs_transformers (project BLEU − transformers BLEU), scoring, and more.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from tasks import hardware  # noqa: E402

if __name__ == "__main__":
    hardware.preload_tcmalloc()  # measured with the allocator the steps run with (python -m tasks)

from support.corpora import digit_pairs  # noqa: E402  (the tests' synthetic task, shared on purpose)
from support import sacrebleu_calls  # noqa: E402
from support.models import build_digits_model, train_digits_model  # noqa: E402
from tasks.evaluate import decoding, engines, scoring  # noqa: E402
from tasks.evaluate import step as evaluate_step  # noqa: E402
from tasks.evaluate.transformers_engine import TransformersDecoder  # noqa: E402
from tasks.io.pairs import read_pairs  # noqa: E402

log = logging.getLogger("bench")


def default_setup(tiny: bool, cache: Path) -> tuple[Path, list[str], list[str]]:
    """The digit-reading model (trained once, then cached) and a test set partly beyond its training."""
    base = cache / "digits-base"
    if not (base / "config.json").exists():
        build_digits_model(base)
    steps = 20 if tiny else 300
    model = cache / f"digits-{steps}-steps"
    if not (model / "train_report.json").exists():
        train_digits_model(base, model, steps=steps)
    test = digit_pairs(24, seed=41, max_len=9) if tiny else digit_pairs(1000, seed=41, max_len=12)
    return model, [s for s, _ in test], [t for _, t in test]


def seed_predict(model_dir: str, sources: list[str], references: list[str], max_length: int,
                 max_source_length: int) -> tuple[list[str], float]:
    """The seed recipe's evaluation: Seq2SeqTrainer.predict with predict_with_generate, batch 16, beam 4, on
    a dataset tokenized with labels, as the seed's is (so it computes the loss as well, as the seed does).
    Only `predict` is timed, as only decoding is timed on the other paths."""
    from datasets import Dataset
    from transformers import (
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, dtype="float32")  # as transformers 4 loaded it
    data = Dataset.from_dict({"en": sources, "de": references}).map(
        lambda b: tokenizer(b["en"], text_target=b["de"], max_length=max_source_length, truncation=True),
        batched=True, remove_columns=["en", "de"])
    with tempfile.TemporaryDirectory() as out:
        args = Seq2SeqTrainingArguments(output_dir=out, per_device_eval_batch_size=16, predict_with_generate=True,
                                        generation_num_beams=4, generation_max_length=max_length,
                                        report_to=[], disable_tqdm=True)
        trainer = Seq2SeqTrainer(model=model, args=args, processing_class=tokenizer,
                                 data_collator=DataCollatorForSeq2Seq(tokenizer, model=model))
        started = time.perf_counter()
        predictions = trainer.predict(data).predictions
        seconds = time.perf_counter() - started
    predictions[predictions < 0] = tokenizer.pad_token_id  # Trainer pads generated ids with -100
    return [t.strip() for t in tokenizer.batch_decode(predictions, skip_special_tokens=True)], seconds


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({hardware.usable_cpus()} cores)"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="seconds-long smoke run (figures mean nothing)")
    parser.add_argument("--model", help="local model folder (default: a small Marian model trained here)")
    parser.add_argument("--test", help="JSONL test set with translation.en/de (default: demo domain test split)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N test sentences")
    parser.add_argument("--max-length", type=int, default=256, help="generation cap for every path")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "bench", help="where built models are kept")
    parser.add_argument("--compare-sentences", default="",
                        help="comma-separated sentences per batch to decode with the project's engine as well")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")

    if args.model:
        if not args.test:
            parser.error("--model needs --test")
        model = Path(args.model)
        sources, references = read_pairs(Path(args.test), "en", "de")
    else:
        model, sources, references = default_setup(args.tiny, args.cache)
    if args.limit:
        sources, references = sources[:args.limit], references[:args.limit]
    sources, references = [scoring.as_line(s) for s in sources], [scoring.as_line(r) for r in references]
    max_length = 24 if args.tiny else args.max_length
    settings = decoding.DecodeSettings(num_beams=4, max_length=max_length)
    log.info("model %s, %d test sentences, %s", model, len(sources), device_name())

    def bleu(hyps):
        return scoring.corpus_scores([scoring.as_line(h) for h in hyps], references, "de")["bleu"]

    seed_hyps, seed_s = seed_predict(str(model), sources, references, max_length, settings.max_source_length)
    log.info("seed: %.1fs, BLEU %.2f", seed_s, bleu(seed_hyps))

    reference = TransformersDecoder(str(model), settings, "en", "de")
    transformers_hyps, transformers_s = reference.timed_translate(sources)
    log.info("transformers: %.1fs, BLEU %.2f", transformers_s, bleu(transformers_hyps))

    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        project, passed_over = open_project_decoder(model, settings, Path(work), (sources, references))
        convert_s = time.perf_counter() - started
        project_hyps, project_s = project.timed_translate(sources)
    log.info("project (%s): %.1fs (+%.1fs to load and convert), BLEU %.2f", project.engine, project_s,
             convert_s, bleu(project_hyps))

    n = len(sources)
    result = {
        "device": device_name(),
        "allocator": hardware.allocator(),
        "model": str(model),
        "sentences": n,
        "num_beams": 4,
        "seed_sentences_per_s": round(n / seed_s, 2),
        "transformers_sentences_per_s": round(n / transformers_s, 2),
        "project_sentences_per_s": round(n / project_s, 2),
        "ratio": round(seed_s / project_s, 2),
        "ratio_including_conversion": round(seed_s / (project_s + convert_s), 2),
        "project_engine": f"{project.engine} ({project.precision})",
        "engine_fallback": passed_over,
        "conversion_s": round(convert_s, 2),
        "bleu_seed": bleu(seed_hyps),
        "bleu_transformers": bleu(transformers_hyps),
        "bleu_project": bleu(project_hyps),
        "bleu_delta_vs_transformers": round(bleu(project_hyps) - bleu(transformers_hyps), 2),
        "identical_outputs_vs_transformers": sum(a == b for a, b in zip(project_hyps, transformers_hyps)),
        "tiny": args.tiny,
    }
    print(json.dumps(result), flush=True)  # the decoding's figures, kept if a comparison below fails
    result["scoring"] = scoring_comparison({"base": seed_hyps, "candidate": project_hyps,
                                            "champion": transformers_hyps}, references)
    for sentences in (int(v) for v in args.compare_sentences.split(",") if v.strip()):
        result.setdefault("by_batch_sentences", {})[str(sentences)] = batch_comparison(
            model, settings, sentences, sources, transformers_hyps, seed_s)
    print(json.dumps(result), flush=True)
    return result


class _Collected(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def open_project_decoder(model: Path, settings: decoding.DecodeSettings, work: Path, probe):
    """The evaluate step's decoder (`decode_engine=auto`) and why it passed over a faster engine, if it did
    (CTranslate2 not installed, without cuBLAS 12 on a GPU, or disagreeing with transformers): what the figures
    then measured is the fallback, and the JSON says so."""
    collected = _Collected()
    engines.log.addHandler(collected)
    try:
        decoder = engines.open_decoder(str(model), settings, "en", "de", work_dir=work, probe=probe)
    finally:
        engines.log.removeHandler(collected)
    return decoder, collected.messages


def scoring_comparison(outputs: dict[str, list[str]], references: list[str]) -> dict:
    """The evaluate step's scoring of three systems on one test set, against one sacrebleu call per figure."""
    hypotheses = {role: [scoring.as_line(h) for h in hyps] for role, hyps in outputs.items()}
    started = time.perf_counter()
    per_sentence: dict = {}
    ours = evaluate_step.score_set(hypotheses, references, "de", per_sentence=per_sentence)
    project_s = time.perf_counter() - started
    started = time.perf_counter()
    plain = {role: (sacrebleu_calls.corpus(hyps, references, "de"), sacrebleu_calls.sentences(hyps, references, "de"))
             for role, hyps in hypotheses.items()}
    tests = {other: sacrebleu_calls.paired_bootstrap(hypotheses[other], hypotheses["candidate"], references, "de")
             for other in ("base", "champion")}
    plain_s = time.perf_counter() - started
    same = all(ours[role][name] == round(corpus[name][0].score, 2) and per_sentence[role] == [
        {k: round(v, 2) for k, v in row.items()} for row in sentences]
        for role, (corpus, sentences) in plain.items() for name in scoring.METRICS)
    same = same and all(_same_test(ours["significance"][f"candidate_vs_{other}"][name], *test[name][:2])
                        for other, test in tests.items() for name in scoring.METRICS)
    return {"systems": len(hypotheses), "project_s": round(project_s, 2), "sacrebleu_calls_s": round(plain_s, 2),
            "ratio": round(plain_s / max(project_s, 1e-9), 2), "same_figures": same}


def _same_test(stored: dict, baseline, system) -> bool:
    """Whether a stored paired test says what sacrebleu's Results say: p-value and both intervals."""
    return (stored["p_value"], stored["baseline_ci"], stored["system_ci"]) == (
        round(float(system.p_value), 4), round(baseline.ci, 2), round(system.ci, 2))


def batch_comparison(model: Path, settings: decoding.DecodeSettings, sentences: int, sources: list[str],
                     reference: list[str], seed_seconds: float) -> dict:
    """The project's engine again, at `sentences` a batch."""
    wider = replace(settings, max_sentences=sentences, max_tokens=max(settings.max_tokens, 32 * sentences))
    with tempfile.TemporaryDirectory() as work:
        decoder = engines.open_decoder(str(model), wider, "en", "de", work_dir=Path(work))
        hyps, seconds = decoder.timed_translate(sources)
    return {"sentences_per_s": round(len(sources) / seconds, 2), "ratio": round(seed_seconds / seconds, 2),
            "engine": f"{decoder.engine} ({decoder.precision})", "max_tokens": wider.max_tokens,
            "identical_outputs_vs_transformers": sum(a == b for a, b in zip(hyps, reference))}


if __name__ == "__main__":
    main()
