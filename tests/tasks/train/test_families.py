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
