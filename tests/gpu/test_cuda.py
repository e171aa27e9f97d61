"""What only a CUDA device can show: the train and evaluate steps through `python -m tasks` in bf16, the padded
fused head in bf16 against fp64 logits, training steps that never wait for the GPU, steps replayed as CUDA graphs
(and a failed capture that leaves training going without them), and a training killed mid-run that resumes on the
GPU.

Skipped where torch sees no CUDA device (CI has none); `make test` on a GPU machine runs them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from support.corpora import digit_pairs
from support.runs import cli, cli_env, kill_once_checkpointed, make_run, write_splits
from tasks import layout
from tasks.io import storage
from tasks.train import step as train


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


pytestmark = pytest.mark.skipif(not _cuda(), reason="needs a CUDA device")


def _digit_run(root: Path, tiny_model, **params):
    cfg = make_run(root / "artifacts", base_model=str(tiny_model), learning_rate=3e-3, warmup_steps=0.1,
                   max_tokens_per_batch=512, min_test_sentences=10, num_beams=2, max_source_length=32, **params)
    pairs = digit_pairs(3000, seed=5)
    write_splits(cfg, root, train=pairs[:2700], validation=pairs[2700:2850], test=pairs[2850:],
                 general_test=digit_pairs(60, seed=32))
    return cfg


def test_train_and_evaluate_steps_run_on_cuda_in_bf16(tmp_path, tiny_model):
    cfg = _digit_run(tmp_path, tiny_model, num_train_epochs=100, max_steps=300, early_stopping_patience=0)
    done = subprocess.run(cli("train", cfg.run_dir), env=cli_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = train.result(cfg)
    assert report["device"].startswith("cuda") and report["precision"] == "bf16"
    assert report["best_validation_loss"] < 1.0  # the digits task is learnt, not merely run

    storage.write_json(cfg.uri(layout.CHAMPION_RECORD), {"found": False, "reason": "none yet"})
    done = subprocess.run(cli("evaluate", cfg.run_dir), env=cli_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    scores = json.loads(Path(cfg.uri(layout.SCORES)).read_text())
    assert scores["candidate"]["bleu"] > scores["base"]["bleu"] + 20
    # The GPU it decoded on is part of what a later run's kept translations must match (tasks/evaluate/reuse.py).
    import torch

    hardware = scores["decoding"]["hardware"]
    assert hardware["gpu"] == torch.cuda.get_device_name() and hardware["cuda"] == torch.version.cuda


def test_the_padded_fused_head_in_bf16_matches_fp64_logits():
    import torch

    from tasks.train import tokenloss

    g = torch.Generator(device="cuda").manual_seed(0)
    hidden = torch.randn(3000, 512, device="cuda", generator=g)
    weight = torch.randn(58101, 512, device="cuda", generator=g) * 0.05  # opus-mt's vocabulary: not a multiple of 8
    bias = torch.randn(58101, device="cuda", generator=g) * 0.1
    labels = torch.randint(0, 58101, (3000,), device="cuda", generator=g)
    h, w, b = (t.clone().requires_grad_() for t in (hidden, weight, bias))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = tokenloss.head_cross_entropy(h, w, b, labels)
    loss.backward()
    assert w.grad.shape == weight.shape and b.grad.shape == bias.shape

    h64, w64, b64 = (t.double().requires_grad_() for t in (hidden, weight, bias))
    want = torch.nn.functional.cross_entropy(h64 @ w64.t() + b64, labels, reduction="sum")
    want.backward()
    assert loss.item() == pytest.approx(want.item(), rel=1e-2)
    for got, ref in ((h.grad, h64.grad), (w.grad, w64.grad), (b.grad, b64.grad)):
        cosine = torch.nn.functional.cosine_similarity(got.double().flatten(), ref.flatten(), dim=0)
        assert cosine > 0.999


def test_a_killed_training_resumes_on_cuda(tmp_path, tiny_model):
    cfg = _digit_run(tmp_path, tiny_model, max_steps=2000, num_train_epochs=100, checkpoint_every_steps=50,
                     early_stopping_patience=0)
    saved = kill_once_checkpointed(cfg, within=300)
    if saved >= 2000:  # it finished before the kill landed: nothing to resume
        pytest.skip("training finished before it could be killed")
    retry = subprocess.run(cli("train", cfg.run_dir), env=cli_env(), capture_output=True, text=True, timeout=600)
    assert retry.returncode == 0, retry.stderr[-3000:]
    report = train.result(cfg)
    assert report["resumed_from_step"] >= saved and report["steps"] == 2000
    assert report["device"].startswith("cuda") and report["precision"] == "bf16"


def _cuda_training(tiny_model, tmp_path, *, pairs: int, graphs: bool, **model_settings):
    """The loop's training state on the GPU, bf16, 256-token batches of digit pairs; and the encoded pairs."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from tasks.train import batching
    from tasks.train import loop as trainloop

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_model, **model_settings)
    found = digit_pairs(pairs, seed=3)
    data = batching.encode(tokenizer, [s for s, _ in found], [t for _, t in found], 32, 32)
    settings = trainloop.LoopSettings(learning_rate=1e-3, weight_decay=0.01, num_train_epochs=1,
                                      max_tokens_per_batch=256, precision="bf16", cuda_graphs=graphs)
    run = trainloop._Training(model, data, data, settings, pad_id=model.config.pad_token_id,
                              decoder_start_id=model.config.decoder_start_token_id,
                              checkpoints=trainloop.CheckpointDir(tmp_path / "checkpoints"),
                              device=torch.device("cuda"), rank=0, world_size=1)
    return run, data


@pytest.mark.parametrize("graphs", [False, True], ids=["steps", "graph-replays"])
def test_training_steps_never_wait_for_the_gpu(tmp_path, tiny_model, graphs):
    """CUDA's sync debug mode raises at any operation that waits for the device (a value read back, a blocking
    copy): steps on padded batches, from pinned memory, must queue their work and return. The loop's look every
    SETTLE_EVERY_STEPS steps is the one wait it allows, outside these steps. With CUDA graphs, capturing a shape
    waits once (torch.cuda.graph synchronizes first); its replays must not."""
    import torch

    from tasks.train import feed

    run, data = _cuda_training(tiny_model, tmp_path, pairs=400, graphs=graphs)
    run.log_plan()
    batches = [feed.prepare(data, batch, 0, run.pad_id, run.decoder_start_id, run.multiple, pin=True)
               for batch in run._batches(0)[:8]]
    assert any(not piece.tensors["attention_mask"].all() for pieces in batches for piece in pieces)
    for pieces in batches[:2]:  # the first steps set up cuBLAS and the allocator
        assert run._step(pieces)
    if graphs:  # every shape captured: from here on each step is a replay
        for pieces in batches[2:]:
            assert run._step(pieces)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for pieces in batches[2:]:
            assert run._step(pieces)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    run._settle()
    steps = len(batches) + (len(batches) - 2 if graphs else 0)
    assert run.running_steps == steps and run.progress.step == 0  # no step was skipped
    if graphs:
        summary = run.graphs.summary()
        assert summary["off"] is None and summary["eager"] == 1, summary
        # each step but the first is a replay: a shape's first step is captured, then replayed. Digit pairs all
        # pad to 8 tokens, so shapes differ in their number of sentences only.
        shapes = {tuple(t.shape for name, t in pieces[0].tensors.items() if name != "target_rows")
                  for pieces in batches[1:]}
        assert summary["replayed"] == steps - 1 and summary["captured"] == summary["shapes"] == len(shapes), summary


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_steps_replayed_as_cuda_graphs_train_like_ordinary_steps(tmp_path, tiny_model, precision):
    """With `cuda_graphs` each batch shape's step is recorded once and replayed: the same training as ordinary
    steps (without dropout, so both runs see the same network), nearly every step a replay, one graph per
    shape. In fp32 the weights agree closely; in bf16 the held-out loss."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from tasks.train import batching
    from tasks.train import loop as trainloop

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    pairs = digit_pairs(800, seed=4)
    data = batching.encode(tokenizer, [s for s, _ in pairs[:700]], [t for _, t in pairs[:700]], 32, 32)
    heldout = batching.encode(tokenizer, [s for s, _ in pairs[700:]], [t for _, t in pairs[700:]], 32, 32)
    reports, weights = [], []
    for graphs in (False, True):
        model = AutoModelForSeq2SeqLM.from_pretrained(tiny_model, dropout=0.0, attention_dropout=0.0,
                                                      activation_dropout=0.0)
        settings = trainloop.LoopSettings(learning_rate=1e-3, weight_decay=0.01, num_train_epochs=4,
                                          max_tokens_per_batch=256, early_stopping_patience=0,
                                          precision=precision, cuda_graphs=graphs)
        reports.append(trainloop.train(model, data, heldout, settings, pad_id=model.config.pad_token_id,
                                       decoder_start_id=model.config.decoder_start_token_id,
                                       checkpoints=trainloop.CheckpointDir(tmp_path / str(graphs)),
                                       device=torch.device("cuda")))
        weights.append({name: value.float().cpu() for name, value in model.state_dict().items()})
    ordinary, graphed = reports
    summary = graphed["cuda_graphs"]
    assert ordinary["cuda_graphs"] is None and summary["off"] is None, summary
    assert summary["captured"] == summary["shapes"] >= 2 and summary["eager"] == 1, summary
    assert summary["replayed"] + summary["eager"] == graphed["steps"] == ordinary["steps"]
    assert graphed["best_validation_loss"] == pytest.approx(ordinary["best_validation_loss"],
                                                            rel=1e-3 if precision == "fp32" else 3e-2)
    if precision == "fp32":  # the two differ only in the order the loss adds its tokens up
        ordinary_weights, graphed_weights = (torch.cat([w.flatten() for w in run.values()]) for run in weights)
        assert (graphed_weights - ordinary_weights).norm() < 1e-3 * ordinary_weights.norm()


def test_a_step_that_cannot_be_captured_turns_graphs_off_and_training_goes_on(tmp_path, tiny_model):
    """A capture that fails (here the step reads a value back while it is recorded) says why and leaves graphs off;
    the run goes on with ordinary steps, dropout's random draws included: the failed capture must not leave CUDA's
    generator or the current stream as capture had them."""
    import torch

    from tasks.train import feed

    run, data = _cuda_training(tiny_model, tmp_path, pairs=200, graphs=True, dropout=0.1)
    update = run.graphs.update

    def reads_back_while_captured(pieces, learning_rate, cache=True):
        outputs = update(pieces, learning_rate, cache)
        if not cache:  # only the capture's call turns autocast's cache off
            outputs[0].item()
        return outputs

    run.graphs.update = reads_back_while_captured
    run.log_plan()
    batches = [feed.prepare(data, batch, 0, run.pad_id, run.decoder_start_id, run.multiple, pin=True)
               for batch in run._batches(0)[:4]]
    for pieces in batches:
        assert run._step(pieces)
    run._settle()
    summary = run.graphs.summary()
    assert "failed" in (summary["off"] or "") and summary["replayed"] == summary["captured"] == 0, summary
    assert summary["eager"] == 4 and run.running_steps == 4 and run.progress.step == 0
    assert torch.cuda.current_stream() == torch.cuda.default_stream()
