"""Training always ends: a loss that stays NaN fails the step with a clear message after a bounded number of
batches, instead of skipping batches forever without counting a step."""

from __future__ import annotations

import pytest

from support.corpora import digit_pairs
from tasks.train import batching, loop


@pytest.mark.timeout(300)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # bf16 first falls back to fp32, then gives up there
def test_a_loss_that_stays_nan_fails_the_step(tiny_model, tmp_path, precision):
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_model)
    with torch.no_grad():
        model.model.shared.weight.fill_(float("nan"))  # every forward pass gives NaN from now on
    pairs = digit_pairs(64, seed=1)
    data = batching.encode(tokenizer, [s for s, _ in pairs], [t for _, t in pairs], 32, 32)
    settings = loop.LoopSettings(learning_rate=1e-3, weight_decay=0.0, num_train_epochs=1000,
                                 max_tokens_per_batch=256, precision=precision, checkpoint_every_steps=10**6)
    with pytest.raises(loop.NonFiniteTraining, match="25 batches in a row gave a non-finite loss .* in fp32"):
        loop.train(model, data, data, settings, pad_id=model.config.pad_token_id,
                   decoder_start_id=model.config.decoder_start_token_id,
                   checkpoints=loop.CheckpointDir(tmp_path / "checkpoints"))
