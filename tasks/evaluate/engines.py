"""Which engine decodes: a small table of engines, and the rule that picks one for a model.

`auto` tries CTranslate2 first (faster, and checked against transformers before it is trusted) and falls
back to transformers, saying why, when CTranslate2 cannot convert the model or its conversion disagrees.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from tasks.evaluate.ctranslate2_engine import CTranslate2Decoder
from tasks.evaluate.decoding import Decoder, DecodeSettings, EngineUnavailable
from tasks.evaluate.transformers_engine import TransformersDecoder

log = logging.getLogger(__name__)

Probe = tuple[Sequence[str], Sequence[str]]


def _ctranslate2(model_dir: str, settings: DecodeSettings, source_lang: str, target_lang: str, work_dir: Path,
                 probe: Probe | None) -> Decoder:
    return CTranslate2Decoder(model_dir, settings, source_lang, target_lang, work_dir=work_dir, probe=probe)


def _transformers(model_dir: str, settings: DecodeSettings, source_lang: str, target_lang: str, work_dir: Path,
                  probe: Probe | None) -> Decoder:
    return TransformersDecoder(model_dir, settings, source_lang, target_lang)


ENGINES = {"ctranslate2": _ctranslate2, "transformers": _transformers}
AUTO_ORDER = ("ctranslate2", "transformers")  # fastest first; the last one decodes every family
CHOICES = ("auto", *ENGINES)


def open_decoder(model_dir: str, settings: DecodeSettings, source_lang: str, target_lang: str, *,
                 work_dir: Path, probe: Probe | None = None) -> Decoder:
    """The decoder for `settings.engine`. "auto" takes the first engine of AUTO_ORDER that can decode the model,
    and says why it passed over the others (CTranslate2: the family is not converted, or the converted model
    disagrees with transformers on the `probe` pairs)."""
    if settings.engine not in CHOICES:
        raise ValueError(f"decode engine must be one of {CHOICES}, not {settings.engine!r}")
    candidates = AUTO_ORDER if settings.engine == "auto" else (settings.engine,)
    for name, fallback in zip(candidates, candidates[1:]):
        try:
            return ENGINES[name](model_dir, settings, source_lang, target_lang, work_dir, probe)
        except EngineUnavailable as err:
            log.warning("%s not used for %s: %s; decoding with %s", name, model_dir, err, fallback)
    return ENGINES[candidates[-1]](model_dir, settings, source_lang, target_lang, work_dir, probe)
