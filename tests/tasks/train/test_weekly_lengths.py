"""A pair longer than the model's position table, in a run whose length limits are above it: week after week the pair
stays in the corpus (its object's cleaned copy is carried), so a crash there would fail every later run."""

from __future__ import annotations

import pytest

from support.corpora import digit_pairs, write_jsonl
from tasks.train import batching
from tasks.train import loop as trainloop
from tasks.train import step as train


def _long_pair(words: int) -> tuple[str, str]:
    digits = [(i * 7) % 10 for i in range(words)]
    en = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    de = ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"]
    return " ".join(en[d] for d in digits), " ".join(de[d] for d in digits)


def test_limits_above_the_models_positions_truncate_to_them_and_keep_the_end_of_sentence(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    most = tokenizer.model_max_length
    source, target = _long_pair(most + 40)
    encoded = batching.encode(tokenizer, [source, "one two"], [target, "eins zwei"], most + 200, most + 100)
    assert [len(ids) for ids in encoded.sources] == [most, 3] and len(encoded.targets[0]) == most
    assert encoded.sources[0][-1] == encoded.targets[0][-1] == tokenizer.eos_token_id
    # Within the model's positions the run's own limits still hold, each side its own.
    short = batching.encode(tokenizer, [source], [target], 16, 24)
    assert (len(short.sources[0]), len(short.targets[0])) == (16, 24)


@pytest.mark.parametrize("tokenizer_knows", [True, False])
def test_training_with_limits_above_the_models_positions_trains(tiny_model, tmp_path, tokenizer_knows):
    """Before, the first batch holding the long pair was an IndexError (on CUDA a device-side assert). A tokenizer
    that does not say its model's length (transformers' 1e30) leaves it to the model's config."""
    import json
    import shutil

    from transformers import AutoConfig

    positions = AutoConfig.from_pretrained(tiny_model).max_position_embeddings
    if not tokenizer_knows:
        tiny_model = shutil.copytree(tiny_model, tmp_path / "base")
        settings_file = tiny_model / "tokenizer_config.json"
        tokenizer_config = json.loads(settings_file.read_text())
        tokenizer_config["model_max_length"] = int(1e30)
        settings_file.write_text(json.dumps(tokenizer_config))
    pairs = [_long_pair(positions + 40)] + digit_pairs(40, seed=8)
    write_jsonl(tmp_path / "train.jsonl", pairs[:30])
    write_jsonl(tmp_path / "validation.jsonl", pairs[30:])
    settings = train.TrainSettings("en", "de", 2 * positions, 2 * positions, trainloop.LoopSettings(
        learning_rate=1e-3, weight_decay=0.0, num_train_epochs=1, max_tokens_per_batch=4096, max_steps=2,
        precision="fp32"))
    report = train.fine_tune(str(tiny_model), tmp_path / "train.jsonl", tmp_path / "validation.jsonl", settings,
                             output_dir=tmp_path / "model", checkpoints=trainloop.CheckpointDir(tmp_path / "ck"))
    assert report["train_pairs"] == 30 and report["steps"] >= 1
