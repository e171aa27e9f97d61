"""Translate a test set fast and identically for every model the gate compares.

One `DecodeSettings` (beam size, length policy, batch policy, engine) is applied to base, candidate and
champion alike, and logged with the scores. A `Decoder` owns what all engines share: the tokenizer, the
model family's source prefix, batches of similar-length sentences within a token budget, and the length
limit of each batch: min(max_length, ratio × longest source + offset) new tokens, so a degenerate output
stops early instead of running to the cap. Beam search ends as soon as `num_beams` hypotheses have finished
(transformers' `early_stopping=True`, which is how CTranslate2 searches): transformers' default heuristic
searches on and, on a weak model, often returns a repetition cut off at the length cap instead, which no
other engine reproduces. Engines fill in two hooks, `_load` and `_decode`:

- `TransformersDecoder` (transformers_engine.py): `generate` under inference_mode, bf16 on GPUs that support it.
- `CTranslate2Decoder` (ctranslate2_engine.py): the model converted to CTranslate2 inside the step and checked
  against transformers before it is trusted; fp32 on CPU, bf16/fp16 on GPU.

`engines.open_decoder` picks the engine: CTranslate2 where it converts the family faithfully, else transformers.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Sequence

from tasks import hardware
from tasks.train import batching

log = logging.getLogger(__name__)

# What every engine's translations depend on beside the model and the settings: the tokenizers and the model code.
LIBRARIES = ("transformers", "tokenizers", "sentencepiece", "torch")


def library_versions(names: Sequence[str]) -> dict[str, str | None]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@dataclass(frozen=True)
class DecodeSettings:
    num_beams: int = 4
    max_length: int = 256  # hard cap on new tokens per sentence
    length_ratio: float = 2.0
    length_offset: int = 10
    max_sentences: int = 256  # per batch
    max_tokens: int = 16384  # per batch: sentences × longest source (padded to a multiple of 8)
    max_source_length: int = 128  # longer sources are truncated, as in training
    engine: str = "auto"
    early_stopping: bool = True  # see the module docstring

    @classmethod
    def from_config(cls, config) -> "DecodeSettings":
        return cls(num_beams=config.num_beams, max_length=config.max_decode_length,
                   length_ratio=config.decode_length_ratio, length_offset=config.decode_length_offset,
                   max_sentences=config.eval_batch_size, max_tokens=config.eval_max_tokens_per_batch,
                   max_source_length=config.max_source_length, engine=config.decode_engine)

    def new_tokens(self, longest_source: int) -> int:
        return min(self.max_length, math.ceil(self.length_ratio * longest_source + self.length_offset))

    def describe(self) -> dict:
        return {**asdict(self), "order": "sorted by source length, batched within the token budget",
                "length_limit": f"min({self.max_length}, {self.length_ratio} × longest source + "
                                f"{self.length_offset}) new tokens per batch"}


def plan_batches(ids: list[list[int]], settings: DecodeSettings) -> list[list[int]]:
    """Indices of sentences of similar length, shortest first, within the sentence and token budgets."""
    data = batching.Encoded(ids, [[] for _ in ids])
    return batching.make_batches(data, settings.max_tokens, settings.max_sentences, seed=0, epoch=0, shuffle=False)


class EngineUnavailable(RuntimeError):
    """This engine cannot decode this model (family not convertible, or the conversion is not faithful)."""


class Decoder:
    """Length-sorted, token-budget batches through an engine; subclasses implement `_load` and `_decode`."""

    engine = "base"
    libraries = LIBRARIES

    def __init__(self, model_dir: str, settings: DecodeSettings, source_lang: str, target_lang: str):
        self.model_dir, self.settings = str(model_dir), settings
        self.source_lang, self.target_lang = source_lang, target_lang
        self.precision = "fp32"
        self.device = "cpu"
        self._load()

    @functools.cached_property
    def positions(self) -> int:
        """What the model's positions hold: a longer source, or a runaway output past it, was an IndexError (a
        device-side assert on CUDA) that failed evaluate, whatever max_source_length and max_decode_length said."""
        from transformers import AutoConfig

        return batching.position_limit(self.tokenizer, AutoConfig.from_pretrained(self.model_dir)) or 10**9

    def _load(self) -> None:
        """Set self.tokenizer, self.family, self.device and self.precision, and load the model."""
        raise NotImplementedError

    def _decode(self, batch: list[list[int]], max_new_tokens: int) -> list[str]:
        """Translate one batch of token-id sequences; returns detokenized text in the same order."""
        raise NotImplementedError

    def encode(self, sources: Sequence[str]) -> list[list[int]]:
        texts = self.family.source_texts(list(sources))
        return self.tokenizer(texts, truncation=True,
                              max_length=min(self.settings.max_source_length, self.positions))["input_ids"]

    def translate(self, sources: Sequence[str]) -> list[str]:
        """Translations in input order."""
        if not sources:
            return []
        ids = self.encode(sources)
        hypotheses = [""] * len(ids)
        for batch in plan_batches(ids, self.settings):
            limit = min(self.settings.new_tokens(max(len(ids[i]) for i in batch)), self.positions)
            for i, text in zip(batch, self._decode([ids[i] for i in batch], limit)):
                hypotheses[i] = text.strip()
        return hypotheses

    def timed_translate(self, sources: Sequence[str]) -> tuple[list[str], float]:
        started = time.perf_counter()
        hypotheses = self.translate(sources)
        return hypotheses, time.perf_counter() - started

    def describe(self) -> dict:
        return {"engine": self.engine, "device": self.device, "precision": self.precision,
                "family": self.family.name, "versions": library_versions(self.libraries),
                "hardware": hardware.processor(self.device)}
