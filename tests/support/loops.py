"""The training loop on the tiny digits model, driven phase by phase as `loop.train` drives it, with batches that
can be made to fail: for tests of the loop's bookkeeping (skipped steps, validations, checkpoints, resumes)."""

from __future__ import annotations

import collections

from support.corpora import digit_pairs
from tasks.train import batching
from tasks.train import loop as trainloop


def tiny_loop(tiny_model, tmp_path, *, validation: batching.Encoded | None = None, dropout: float = 0.0,
              **settings):
    """(run, model): a `_Training` on 400 digit pairs (also its validation set unless `validation` is given),
    checkpointing to tmp_path/checkpoints, on CPU."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_model, dropout=dropout)
    pairs = digit_pairs(400, seed=3)
    data = batching.encode(tokenizer, [s for s, _ in pairs], [t for _, t in pairs], 32, 32)
    defaults = dict(learning_rate=1e-3, weight_decay=0.0, num_train_epochs=1, max_tokens_per_batch=64,
                    early_stopping_patience=0, eval_every_steps=10**6, checkpoint_every_steps=10**6,
                    log_every_steps=10**6)
    run = trainloop._Training(model, data, data if validation is None else validation,
                              trainloop.LoopSettings(**{**defaults, **settings}),
                              pad_id=model.config.pad_token_id, decoder_start_id=model.config.decoder_start_token_id,
                              checkpoints=trainloop.CheckpointDir(tmp_path / "checkpoints"),
                              device=torch.device("cpu"), rank=0, world_size=1)
    return run, model


def train_to_end(run) -> dict:
    run.resume()
    run.log_plan()
    while run.progress.step < run.total_steps and not run.stopped:
        run.one_epoch()
    return run.finish()


def poison(monkeypatch, calls_to_spoil, *, loss: bool = True, give_up_after: int = 10**6):
    """Make chosen forward/backward calls (1-based) give NaN gradients and, with `loss`, a NaN loss, as an
    overflow would; a call past `give_up_after` fails the test rather than let a loop that never ends run on."""
    real, calls = trainloop.forward_backward, collections.Counter()

    def spoiled(net, pieces, *args):
        calls["n"] += 1
        assert calls["n"] <= give_up_after, f"still training after {give_up_after} batches"
        result = real(net, pieces, *args)
        if calls["n"] in calls_to_spoil:
            for p in net.parameters():
                if p.grad is not None:
                    p.grad.fill_(float("nan"))
            return result * float("nan") if loss else result
        return result

    monkeypatch.setattr(trainloop, "forward_backward", spoiled)
    return calls
