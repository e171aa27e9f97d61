"""CTranslate2 as the decoding engine: beam search in C++, fp32 on CPU, bf16/fp16 on GPU.

The model is converted inside the evaluate step (into its scratch folder), so every model decodes from
exactly the weights that were trained or published. Two things make the conversion trustworthy:

- Marian is converted so that the decoder starts from the embedding of its start token (<pad>), as
  transformers does. CTranslate2's stock Marian loader drops <pad> and starts from a zero vector instead,
  which is right for models converted from Marian C++ (their <pad> row is zero) but wrong for a model
  fine-tuned in transformers: the embeddings are tied to the output layer, so training moves the <pad> row.
  With the stock loader our fine-tuned test model scored 47 BLEU where transformers scored 100.
- Before it is trusted, the converted model scores a few reference translations (teacher forcing) and its
  per-token log-probabilities must match transformers' within `MAX_LOGPROB_DRIFT`; otherwise the engine is
  declared unavailable and decoding falls back to transformers.

The search matches transformers' beam search with `early_stopping=True` (see tasks/evaluate/decoding.py):
patience 1, the same length limit, one step less where transformers forces the end token at the cap, and
transformers' ranking of the finished hypotheses (`_best`: a hypothesis cut at the cap counts the end token
transformers forces there). On our test model, reading 150 digit strings of which the longest it never saw in
training (so some outputs degenerate), CTranslate2 fp32 gives the same 150 translations as transformers; int8
moved BLEU by 0.3, which is why CPUs use fp32.

Only Marian (opus-mt) is converted for now: it is the family we can check here end to end. M2M100 and
NLLB convert with CTranslate2 too, but need the target-language prefix on every batch; they decode with
transformers until that is added and checked.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Sequence

from tasks import hardware
from tasks.evaluate.decoding import LIBRARIES, Decoder, DecodeSettings, EngineUnavailable
from tasks.train import families

log = logging.getLogger(__name__)

CONVERTIBLE = {"marian"}
PROBE_PAIRS = 32
# Mean |Δ log p| per target token between CTranslate2 and transformers on the probe pairs. A faithful
# conversion of our test model drifts by ~0.001; the stock Marian conversion of a fine-tuned model by ~3.4.
MAX_LOGPROB_DRIFT = 0.05


def _loader():
    from ctranslate2.converters.transformers import BartLoader

    class MarianFromStartTokenLoader(BartLoader):
        """Marian as transformers runs it: post-norm, no embedding layer norm, <pad> kept as start token."""

        @property
        def architecture_name(self):
            return "MarianMTModel"

        def get_model_spec(self, model):
            model.config.normalize_before = False
            model.config.normalize_embedding = False
            return super().get_model_spec(model)

        def set_config(self, config, model, tokenizer):
            config.eos_token = tokenizer.eos_token
            config.unk_token = tokenizer.unk_token
            config.decoder_start_token = tokenizer.convert_ids_to_tokens(model.config.decoder_start_token_id)

    return MarianFromStartTokenLoader()


def convert(model, tokenizer, out_dir: Path) -> Path:
    """Write the CTranslate2 model for an already loaded transformers Marian model (weights kept in fp32;
    the compute type is chosen when it is loaded)."""
    from ctranslate2.converters.converter import Converter

    class _Loaded(Converter):
        def _load(self):
            import torch

            with torch.no_grad():
                return _loader()(model, tokenizer)

    return Path(_Loaded().convert(str(out_dir), force=True))


def _device_and_compute_type() -> tuple[str, str, str]:
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        compute = "bfloat16" if "bfloat16" in ctranslate2.get_supported_compute_types("cuda") else "float16"
        return "cuda", compute, {"bfloat16": "bf16", "float16": "fp16"}[compute]
    # Not int8: on the test model (150 sentences) int8 flipped enough words to move BLEU by 0.3 against
    # transformers, more than the 0.2 a gate decision may depend on; fp32 matched it exactly.
    return "cpu", "float32", "fp32"


class CTranslate2Decoder(Decoder):
    engine = "ctranslate2"
    libraries = (*LIBRARIES, "ctranslate2", "nvidia-cublas-cu12")  # CTranslate2 brings its kernels, cuBLAS on GPU

    def __init__(self, model_dir: str, settings: DecodeSettings, source_lang: str, target_lang: str, *,
                 work_dir: Path, probe: tuple[Sequence[str], Sequence[str]] | None = None):
        self.work_dir, self.probe = Path(work_dir), probe
        self.logprob_drift: float | None = None
        super().__init__(model_dir, settings, source_lang, target_lang)

    def _load(self) -> None:
        from transformers import AutoTokenizer  # heavy: imported by the steps that decode

        try:
            import ctranslate2  # heavy and optional: a worker without it decodes with transformers
        except ImportError as err:
            raise EngineUnavailable(f"ctranslate2 cannot be imported: {err}") from None

        if not self.settings.early_stopping:
            raise EngineUnavailable("CTranslate2's beam search always stops when num_beams hypotheses have finished")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        model = families.load_model(self.model_dir)  # fp32: converted as such, and the probe's reference
        self.family = families.prepare(model, self.tokenizer, self.source_lang, self.target_lang)
        if self.family.name not in CONVERTIBLE:
            raise EngineUnavailable(f"the {self.family.name} family is not converted (only {sorted(CONVERTIBLE)})")
        converted = convert(model, self.tokenizer, self.work_dir)
        self.device, compute_type, self.precision = _device_and_compute_type()
        self.translator = self._start(ctranslate2, converted, compute_type)
        self.options = self._options_from(model.generation_config)
        if self.probe is not None:
            self.logprob_drift = self._drift(model, *self.probe)
            # Not finite: the engine's log-probabilities overflowed (Marian in fp16, on GPUs without bf16), and NaN
            # compares false with any limit.
            if not math.isfinite(self.logprob_drift) or self.logprob_drift > MAX_LOGPROB_DRIFT:
                raise EngineUnavailable(f"converted model disagrees with transformers: mean |Δ log p| per token "
                                        f"{self.logprob_drift:.4f} > {MAX_LOGPROB_DRIFT}")
            log.info("CTranslate2 conversion checked on %d pairs: mean |Δ log p| per token %.4f",
                     min(len(self.probe[0]), PROBE_PAIRS), self.logprob_drift)

    def _start(self, ctranslate2, converted: Path, compute_type: str):
        """The translator, once it has translated one token. On a GPU the wheel loads cuBLAS 12 only when it
        first needs it, and a missing library is a plain RuntimeError, at load or at the first translation:
        here it makes the engine unavailable, so evaluation falls back to transformers instead of failing."""
        try:
            translator = ctranslate2.Translator(str(converted), device=self.device, compute_type=compute_type,
                                                intra_threads=hardware.usable_cpus() if self.device == "cpu" else 0)
            translator.translate_batch([[self.tokenizer.eos_token]], beam_size=1, max_decoding_length=1)
        except RuntimeError as err:
            raise EngineUnavailable(f"CTranslate2 cannot run on {self.device} ({compute_type}): {err}") from err
        return translator

    def _options_from(self, generation_config) -> dict:
        """The search options transformers would take from the model's generation config."""
        # Every finished hypothesis comes back with its score, for `_best` to rank as transformers would.
        self.length_penalty = float(generation_config.length_penalty or 1.0)
        options = {"length_penalty": self.length_penalty, "return_scores": True, "return_end_token": True,
                   "num_hypotheses": self.settings.num_beams,
                   "repetition_penalty": float(generation_config.repetition_penalty or 1.0),
                   "no_repeat_ngram_size": int(generation_config.no_repeat_ngram_size or 0)}
        banned = [self.tokenizer.convert_ids_to_tokens(ids) for ids in generation_config.bad_words_ids or []]
        if banned:
            options["suppress_sequences"] = banned
        # transformers spends the last position of a capped output on a forced end token; CTranslate2 would
        # write one more real token there instead, so it stops one step earlier.
        self.cap_offset = 1 if generation_config.forced_eos_token_id is not None else 0
        return options

    def _decode(self, batch: list[list[int]], max_new_tokens: int) -> list[str]:
        tokens = [self.tokenizer.convert_ids_to_tokens(ids) for ids in batch]
        # patience=1: stop once num_beams hypotheses have finished, as transformers does with early_stopping.
        results = self.translator.translate_batch(tokens, beam_size=self.settings.num_beams, patience=1,
                                                  max_decoding_length=max(max_new_tokens - self.cap_offset, 1),
                                                  max_input_length=0, **self.options)
        return [self.tokenizer.decode(self.tokenizer.convert_tokens_to_ids(self._best(r)), skip_special_tokens=True)
                for r in results]

    def _best(self, result) -> list[str]:
        """The hypothesis transformers would return. Both engines rank by summed log-probability / length **
        length_penalty, the length counting the end token; but a hypothesis cut at the length cap has no end
        token here, while transformers forces one there (forced_eos_token_id) and counts it. On a runaway
        repetition that one token can decide between it and a short, finished translation, so it is counted
        here too."""
        eos = self.tokenizer.eos_token

        def score(candidate: tuple[list[str], float]) -> float:
            hypothesis, normalized = candidate
            if hypothesis[-1:] == [eos] or not self.cap_offset:
                return normalized
            length = len(hypothesis)
            return normalized * (length / (length + self.cap_offset)) ** self.length_penalty

        best, _ = max(zip(result.hypotheses, result.scores), key=score)
        return best[:-1] if best[-1:] == [eos] else best

    def _drift(self, model, sources: Sequence[str], references: Sequence[str]) -> float:
        """Mean over probe pairs of |per-token log p(reference) in CTranslate2 − the same in transformers|."""
        import torch

        sources, references = list(sources)[:PROBE_PAIRS], list(references)[:PROBE_PAIRS]
        enc = self.tokenizer(self.family.source_texts(sources), text_target=references, padding=True, truncation=True,
                             max_length=min(self.settings.max_source_length, self.positions), return_tensors="pt")
        labels = enc["labels"].masked_fill(enc["labels"] == self.tokenizer.pad_token_id, -100)
        with torch.inference_mode():
            logits = model.eval()(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                  labels=labels).logits.float()
        mask = labels != -100
        token_logp = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        reference_logp = ((token_logp * mask).sum(1) / mask.sum(1)).tolist()

        source_tokens = [self.tokenizer.convert_ids_to_tokens(ids) for ids in self.encode(sources)]
        # CTranslate2 adds the start token and scores the end token itself.
        target_tokens = [self.tokenizer.convert_ids_to_tokens([i for i in row if i != -100][:-1])
                         for row in labels.tolist()]
        scored = self.translator.score_batch(source_tokens, target_tokens, max_input_length=0)
        engine_logp = [sum(r.log_probs) / max(len(r.log_probs), 1) for r in scored]
        return sum(abs(a - b) for a, b in zip(engine_logp, reference_logp)) / max(len(scored), 1)
