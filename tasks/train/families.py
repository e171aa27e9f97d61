"""What each seq2seq model family needs to translate a given language pair, in training and decoding alike.

- Marian (opus-mt): one model per pair, nothing to set.
- M2M100, NLLB, mBART-50: many-to-many models. The tokenizer must know the source and target language
  codes, and decoding must force the target-language token as the first generated token (forced BOS).
  That id is stored in the model's generation config, so the published model translates correctly
  without extra arguments.
- T5 / mT5: a task prefix on the source ("translate English to German: ").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# ISO 639-1 → each family's code, for the languages our users run; extend as pairs are added.
_NAMES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "pt": "Portuguese",
          "nl": "Dutch", "pl": "Polish", "cs": "Czech", "sv": "Swedish", "da": "Danish", "fi": "Finnish",
          "ro": "Romanian", "ru": "Russian", "uk": "Ukrainian", "tr": "Turkish", "ar": "Arabic",
          "zh": "Chinese", "ja": "Japanese", "ko": "Korean"}
_NLLB = {"en": "eng_Latn", "de": "deu_Latn", "fr": "fra_Latn", "es": "spa_Latn", "it": "ita_Latn",
         "pt": "por_Latn", "nl": "nld_Latn", "pl": "pol_Latn", "cs": "ces_Latn", "sv": "swe_Latn",
         "da": "dan_Latn", "fi": "fin_Latn", "ro": "ron_Latn", "ru": "rus_Cyrl", "uk": "ukr_Cyrl",
         "tr": "tur_Latn", "ar": "arb_Arab", "zh": "zho_Hans", "ja": "jpn_Jpan", "ko": "kor_Hang"}
_MBART50 = {"en": "en_XX", "de": "de_DE", "fr": "fr_XX", "es": "es_XX", "it": "it_IT", "pt": "pt_XX",
            "nl": "nl_XX", "pl": "pl_PL", "cs": "cs_CZ", "sv": "sv_SE", "fi": "fi_FI", "ro": "ro_RO",
            "ru": "ru_RU", "uk": "uk_UA", "tr": "tr_TR", "ar": "ar_AR", "zh": "zh_CN", "ja": "ja_XX",
            "ko": "ko_KR"}


class UnsupportedLanguage(ValueError):
    pass


def load_model(model_dir: str):
    """The seq2seq model in `model_dir` with fp32 weights, whatever dtype its config declares. transformers 5 loads a
    model in its config's dtype (`dtype="auto"`): a base saved in fp16 or bf16 would train half-precision weights
    without fp32 master weights (fp16's second moments underflow and the loss turns NaN within steps; bf16 rounds
    small updates away and publishes a bf16 model), and decode in a precision the report does not say. Training
    and decoding choose their precision themselves (autocast, or a cast to bf16 on a GPU)."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM.from_pretrained(model_dir, dtype=torch.float32)


@dataclass(frozen=True)
class Family:
    name: str
    prefix: str = ""
    generate_kwargs: dict = field(default_factory=dict)

    def source_texts(self, sources: list[str]) -> list[str]:
        return [self.prefix + s for s in sources] if self.prefix else list(sources)


def _code(table: dict, lang: str, family: str) -> str:
    try:
        return table[lang]
    except KeyError:
        raise UnsupportedLanguage(f"no {family} language code known for {lang!r}; known: {sorted(table)}") \
            from None


def detect(model, tokenizer) -> str:
    kind = type(tokenizer).__name__.lower()
    if "nllb" in kind:
        return "nllb"
    if "mbart" in kind:
        return "mbart"
    if "m2m100" in kind:
        return "m2m100"
    model_type = getattr(model.config, "model_type", "")
    if model_type in ("t5", "mt5", "umt5"):
        return "t5"
    return "marian" if model_type == "marian" else model_type


def prepare(model, tokenizer, source_lang: str, target_lang: str) -> Family:
    """Configure tokenizer and model for the pair; returns what callers add to sources and to generate()."""
    name = detect(model, tokenizer)
    if name == "t5":
        prefix = f"translate {_code(_NAMES, source_lang, 't5')} to {_code(_NAMES, target_lang, 't5')}: "
        return Family(name, prefix=prefix)
    if name in ("nllb", "mbart", "m2m100"):
        table = {"nllb": _NLLB, "mbart": _MBART50, "m2m100": {k: k for k in _NAMES}}[name]
        src, tgt = _code(table, source_lang, name), _code(table, target_lang, name)
        tokenizer.src_lang, tokenizer.tgt_lang = src, tgt
        forced = tokenizer.get_lang_id(tgt) if name == "m2m100" else tokenizer.convert_tokens_to_ids(tgt)
        model.generation_config.forced_bos_token_id = forced
        log.info("%s: source %s, target %s, forced BOS id %d", name, src, tgt, forced)
        return Family(name, generate_kwargs={"forced_bos_token_id": forced})
    return Family(name)
