"""Decoding: the length and batch policy, and CTranslate2 against transformers on a trained model."""

from pathlib import Path

import pytest

from support.corpora import digit_pairs
from tasks.evaluate import ctranslate2_engine, decoding, engines, scoring


@pytest.mark.parametrize("settings, longest_source, limit", [
    ({}, 5, 20),  # 2 × 5 + 10
    ({}, 123, 256),  # capped
    ({"length_ratio": 1.5, "length_offset": 0}, 7, 11),  # ceil(10.5)
    ({"max_length": 16}, 9, 16),
    ({"length_ratio": 1.0, "length_offset": 4, "max_length": 8}, 3, 7),
])
def test_the_length_limit_follows_the_longest_source_of_the_batch(settings, longest_source, limit):
    assert decoding.DecodeSettings(**settings).new_tokens(longest_source) == limit


@pytest.mark.parametrize("lengths, max_sentences, max_tokens, batches", [
    ([3, 9, 4, 10], 8, 32, [[0, 2], [1, 3]]),  # sorted by length; a third row, padded to 16, would exceed 32
    ([3, 9, 4, 10], 8, 1024, [[0, 2, 1, 3]]),
    ([5, 5, 5, 5, 5], 2, 1024, [[0, 1], [2, 3], [4]]),  # the sentence cap
    ([20], 8, 8, [[0]]),  # a sentence longer than the budget still gets a batch of its own
])
def test_batches_group_similar_lengths_within_the_budgets(lengths, max_sentences, max_tokens, batches):
    ids = [[1] * n for n in lengths]
    settings = decoding.DecodeSettings(max_sentences=max_sentences, max_tokens=max_tokens)
    assert decoding.plan_batches(ids, settings) == batches


@pytest.fixture(scope="module")
def digits_test():
    """3–9 digits: the model was trained on 3–7, so the longest ones are partly wrong."""
    pairs = digit_pairs(150, seed=51, min_len=3, max_len=9)
    return [s for s, _ in pairs], [t for _, t in pairs]


def _decode(model, engine, sources, work_dir, probe=None):
    decoder = engines.open_decoder(str(model), decoding.DecodeSettings(num_beams=4, engine=engine), "en", "de",
                                    work_dir=work_dir, probe=probe)
    return decoder, decoder.translate(sources)


def test_ctranslate2_scores_within_0_2_bleu_of_transformers(digits_translator, digits_test, tmp_path):
    sources, references = digits_test
    engine, fast = _decode(digits_translator, "ctranslate2", sources, tmp_path, probe=digits_test)
    _, reference = _decode(digits_translator, "transformers", sources, tmp_path)
    assert engine.engine == "ctranslate2" and engine.precision == "fp32"
    assert engine.logprob_drift < 0.01
    fast_bleu = scoring.corpus_scores(fast, references, "de")["bleu"]
    reference_bleu = scoring.corpus_scores(reference, references, "de")["bleu"]
    assert 30 < reference_bleu < 100  # some outputs are wrong, so the comparison can tell engines apart
    assert abs(fast_bleu - reference_bleu) <= 0.2, (fast_bleu, reference_bleu)


def test_the_stock_marian_conversion_is_caught_and_not_used(digits_translator, digits_test, tmp_path,
                                                            monkeypatch, caplog):
    """CTranslate2's own Marian converter drops the <pad> start embedding that fine-tuning moved: the probe
    sees the drift, so "ctranslate2" refuses and "auto" decodes with transformers instead."""
    from ctranslate2.converters import TransformersConverter

    def stock(model, tokenizer, out_dir: Path) -> Path:
        return Path(TransformersConverter(str(digits_translator)).convert(str(out_dir), force=True))

    monkeypatch.setattr(ctranslate2_engine, "convert", stock)
    with pytest.raises(decoding.EngineUnavailable, match="disagrees with transformers"):
        _decode(digits_translator, "ctranslate2", [], tmp_path / "strict", probe=digits_test)
    decoder, _ = _decode(digits_translator, "auto", [], tmp_path / "auto", probe=digits_test)
    assert decoder.engine == "transformers"
    assert "decoding with transformers" in caplog.text


@pytest.mark.parametrize("cap_offset, chosen", [
    (1, "runaway"),  # transformers forces </s> at the cap and counts it: -0.1560 × 27/28 = -0.1504 > -0.1545
    (0, "short"),  # no forced end token: the scores compare as they are
])
def test_the_best_hypothesis_is_ranked_as_transformers_ranks_it(cap_offset, chosen):
    """CTranslate2 returns every finished hypothesis with its length-normalized score; a runaway cut at the
    length cap has no end token there, while transformers forces one and counts it in the length."""
    from types import SimpleNamespace

    decoder = ctranslate2_engine.CTranslate2Decoder.__new__(ctranslate2_engine.CTranslate2Decoder)
    decoder.tokenizer, decoder.cap_offset, decoder.length_penalty = SimpleNamespace(eos_token="</s>"), cap_offset, 1.0
    short, runaway = ["▁acht", "▁zwei", "</s>"], ["▁acht"] + ["▁sechs"] * 26
    result = SimpleNamespace(hypotheses=[short, runaway], scores=[-0.1545, -0.1560])
    assert decoder._best(result) == {"short": short[:-1], "runaway": runaway}[chosen]


class FirstTranslationFails:
    """A translator whose first translation raises, as CTranslate2 does when cuBLAS loads lazily and is missing."""

    def __init__(self, translator):
        self.translator = translator

    def translate_batch(self, *args, **kwargs):
        raise RuntimeError("Library libcublas.so.12 is not found or cannot be loaded")

    def __getattr__(self, name):
        return getattr(self.translator, name)


def _cannot_load(*args, **kwargs):
    raise RuntimeError("Library libcublas.so.12 is not found or cannot be loaded")


@pytest.mark.parametrize("where", ["loading", "first translation"])
def test_a_ctranslate2_without_its_cuda_libraries_falls_back_to_transformers(tiny_model, tmp_path, monkeypatch,
                                                                          caplog, where):
    import ctranslate2

    real = ctranslate2.Translator
    monkeypatch.setattr(ctranslate2, "Translator", _cannot_load if where == "loading" else
                        lambda *args, **kwargs: FirstTranslationFails(real(*args, **kwargs)))
    with pytest.raises(decoding.EngineUnavailable, match="CTranslate2 cannot run on cpu .*libcublas.so.12"):
        _decode(tiny_model, "ctranslate2", [], tmp_path / "strict")
    decoder, hypotheses = _decode(tiny_model, "auto", ["12 34"], tmp_path / "auto")
    assert decoder.engine == "transformers" and len(hypotheses) == 1
    assert "ctranslate2 not used" in caplog.text and "libcublas.so.12" in caplog.text
    assert "decoding with transformers" in caplog.text


def test_sources_and_outputs_past_the_models_positions_are_cut_to_them(tiny_model, monkeypatch):
    """max_source_length and max_decode_length go to 4096, the model's positions not (opus-mt: 512): a longer test
    sentence, or a runaway output past them, was an IndexError that failed evaluate (a device-side assert on CUDA)."""
    from transformers import AutoConfig

    from tasks.evaluate.transformers_engine import TransformersDecoder

    positions = AutoConfig.from_pretrained(tiny_model).max_position_embeddings
    settings = decoding.DecodeSettings(num_beams=1, max_source_length=4 * positions, max_length=4 * positions,
                                       length_offset=4 * positions, engine="transformers")
    decoder = TransformersDecoder(str(tiny_model), settings, "en", "de")
    limits = []
    decode = TransformersDecoder._decode
    monkeypatch.setattr(TransformersDecoder, "_decode", lambda self, batch, limit: limits.append(limit) or decode(
        self, batch, limit))
    long_source = " ".join(["one two three"] * positions)
    assert len(decoder.translate([long_source, "one two"])) == 2
    assert max(limits) == positions and max(len(ids) for ids in decoder.encode([long_source])) == positions
