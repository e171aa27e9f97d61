"""Forced-BOS families: the tokenizer gets the language codes, decoding starts with the target-language token."""


import pytest

from support.corpora import digit_pairs, write_jsonl
from tasks.evaluate import decoding, engines, scoring
from tasks.train import families
from tasks.train import loop as trainloop
from tasks.train import step as train


def test_m2m100_is_configured_for_the_pair(tiny_m2m100):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_m2m100)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_m2m100)
    family = families.prepare(model, tokenizer, "en", "de")
    de = tokenizer.get_lang_id("de")
    assert family.name == "m2m100"
    assert family.generate_kwargs == {"forced_bos_token_id": de}
    assert model.generation_config.forced_bos_token_id == de
    encoded = tokenizer("three one", text_target="drei eins")
    assert encoded["input_ids"][0] == tokenizer.get_lang_id("en")
    assert encoded["labels"][0] == de


def test_unknown_language_code_is_a_clear_error(tiny_m2m100):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_m2m100)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_m2m100)
    with pytest.raises(families.UnsupportedLanguage, match="no m2m100 language code known for 'xx'"):
        families.prepare(model, tokenizer, "en", "xx")


def test_a_fine_tuned_m2m100_translates_and_keeps_its_forced_bos(tiny_m2m100, tmp_path):
    pairs = digit_pairs(1200, seed=3)
    write_jsonl(tmp_path / "train.jsonl", pairs[:1000])
    write_jsonl(tmp_path / "val.jsonl", pairs[1000:1100])
    settings = train.TrainSettings("en", "de", 32, 32, trainloop.LoopSettings(
        learning_rate=1.5e-3, weight_decay=0.0, num_train_epochs=100, max_steps=500, max_tokens_per_batch=512,
        warmup_steps=0.1, early_stopping_patience=0, precision="fp32", eval_every_steps=50))
    out = tmp_path / "model"
    report = train.fine_tune(str(tiny_m2m100), tmp_path / "train.jsonl", tmp_path / "val.jsonl", settings,
                             output_dir=out, checkpoints=trainloop.CheckpointDir(tmp_path / "ck"))
    assert report["family"] == "m2m100"
    test = pairs[1100:]
    decoder = engines.open_decoder(str(out), decoding.DecodeSettings(num_beams=2, max_length=32), "en", "de",
                                    work_dir=tmp_path / "decode")
    assert decoder.engine == "transformers"  # CTranslate2 is used for Marian only
    hyps = decoder.translate([s for s, _ in test])
    assert not any("__de__" in h for h in hyps)  # the language token steers decoding, it is not output
    assert scoring.corpus_scores(hyps, [t for _, t in test], "de")["bleu"] > 30
    from transformers import AutoTokenizer, GenerationConfig

    # Saved with the model: the published model decodes into German without extra arguments.
    assert GenerationConfig.from_pretrained(out).forced_bos_token_id == \
        AutoTokenizer.from_pretrained(out).get_lang_id("de")


def test_a_model_saved_in_bf16_decodes_with_fp32_weights_on_cpu(tiny_model, tmp_path):
    """transformers 5 loads a model in its config's dtype: a base published in bf16 decoded in bf16 on a CPU while
    the candidate decoded in fp32, and the scores said fp32 for both (and keyed reused translations so)."""
    import shutil

    import torch
    from transformers import AutoModelForSeq2SeqLM

    from tasks.evaluate.transformers_engine import TransformersDecoder

    half = shutil.copytree(tiny_model, tmp_path / "bf16")
    AutoModelForSeq2SeqLM.from_pretrained(tiny_model).to(torch.bfloat16).save_pretrained(half)
    assert families.load_model(half).dtype == torch.float32
    decoder = TransformersDecoder(str(half), decoding.DecodeSettings(num_beams=2, max_length=8), "en", "de")
    assert decoder.device == "cpu" and decoder.precision == "fp32" and decoder.model.dtype == torch.float32


def test_a_ctranslate2_conversion_whose_log_probabilities_are_not_finite_is_not_trusted(tiny_model, tmp_path,
                                                                                       monkeypatch):
    """CTranslate2 decodes in fp16 on GPUs without bf16 (T4, V100), where Marian can overflow: a NaN drift from the
    probe compared false with the limit, and the engine was trusted."""
    from tasks.evaluate.ctranslate2_engine import CTranslate2Decoder

    monkeypatch.setattr(CTranslate2Decoder, "_drift", lambda self, model, sources, references: float("nan"))
    probe = (["12 34"], ["zwölf vierunddreißig"])
    with pytest.raises(decoding.EngineUnavailable, match="disagrees with transformers"):
        engines.open_decoder(str(tiny_model), decoding.DecodeSettings(engine="ctranslate2"), "en", "de",
                             work_dir=tmp_path / "strict", probe=probe)
    decoder = engines.open_decoder(str(tiny_model), decoding.DecodeSettings(), "en", "de", work_dir=tmp_path / "auto",
                                   probe=probe)
    assert decoder.engine == "transformers"


def test_the_alignment_screen_scores_a_model_saved_in_bf16_with_fp32_weights_on_cpu(tiny_model, tmp_path):
    """The alignment screen's scorer loads models as training and decoding do (`families.load_model`): a base saved
    in bf16 scored pairs in bf16 on a CPU while its report said fp32."""
    import shutil

    import torch
    from transformers import AutoModelForSeq2SeqLM

    from tasks.evaluate.likelihood import PairScorer

    half = shutil.copytree(tiny_model, tmp_path / "bf16")
    AutoModelForSeq2SeqLM.from_pretrained(tiny_model).to(torch.bfloat16).save_pretrained(half)
    scorer = PairScorer(str(half), "en", "de")
    assert scorer.precision == "fp32" and scorer.model.dtype == torch.float32
