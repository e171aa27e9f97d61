"""Training throughput: the project's training path against the seed recipe, in one process.

Both train the same opus-mt-en-de-shaped Marian model (random weights: d_model 512, 6+6 layers, vocabulary
58101, and opus-mt's swish activation and embeddings scaled by sqrt(d_model)) for one epoch over the same
synthetic pairs, whose lengths follow a long-tailed distribution like real sentence pairs and whose targets
depend on their sources (so there is something to learn):

- seed: the seed document's recipe: Seq2SeqTrainer, fp32, batch 16, lr 2e-5, weight decay 0.01, default
  (random) sampler, DataCollatorForSeq2Seq;
- project: tasks.train.loop with the run config's defaults (token-budget batches of similar length, the
  automatic batch size, fused head + loss, AdamW with warmup) in the fastest precision the project offers
  on the device: bf16 on GPUs and on CPUs with native bf16 (AVX512-BF16 or AMX), else fp32. On CPU the run
  config's automatic precision is fp32 (see tasks/precision.py); `--precision fp32` measures that path.

Throughput counts the real (unpadded) source + target tokens of the epoch over its wall time. Each path first
trains once on a few pairs, untimed (`warm_up`), so that every timed run, the seed's included, runs in a warm
process. Both models
are then scored on the same held-out pairs (the untrained model's loss is `initial_loss`), so the loss
after the same tokens can be compared. `unigram_loss` is the held-out loss of the best model that ignores its
source (each target token scored by its frequency among the training targets): a loss at that level means
the model has learnt which words targets use, not how they follow from their sources.

Arithmetic: `training_tflop` is the matrix arithmetic an epoch's real tokens need (`training_flops`, checked
against PyTorch's FLOP counter), `seed_model_tflops` and `project_model_tflops` its rate over each path's epoch
time, and `project_share_of_matmul_peak` the project's rate over `matmul_peak_tflops`, what one large matrix
product reaches on the device in the project's precision (issue 19's goal 1, 430k tokens/s on an H200, is
about 12 % of that chip's bf16 datasheet peak).

Time to quality (on by default; `--no-time-to-loss` skips it): a fresh model trains with the project's loop and
the run config's defaults until its validation loss on the held-out pairs reaches the seed recipe's one-epoch
loss, for as many epochs as that takes (at most `--max-epochs`, over which the learning rate is scheduled), with
a validation every quarter epoch. `time_to_loss_ratio` is the seed's one-epoch wall time over the project's time
to the same loss, validations included; null when the project never got there. `--compare-batches 4096,2048`
repeats the time-to-quality run at those token budgets (the learning rate following each, as the run config's
automatic rate does) and reports them under `time_to_loss_by_batch`, to show which batch the device wants.
`--compare-beta2 0.999` repeats it at the default batch with that Adam β2 (the loop's is 0.98, the seed's
Trainer 0.999) under `time_to_loss_by_beta2`, and `--compare-lr 1e-4` with that peak learning rate instead of
the automatic one under `time_to_loss_by_lr`: suspects for the held-out loss plateau measured on an H200 (at
the unigram loss, with the automatic rate's 2.8e-4 to 4.9e-4; at the fixed 1e-4 before, 2,048-token batches had
gone below it in one epoch).

`--compare-graphs` (CUDA only) runs the throughput epoch again with steps replayed as CUDA graphs (the run
config's `cuda_graphs`, tasks/train/graphs.py), then once more without, so that both are measured in a warm
process: `graphs` holds their times, `speedup` (the second ordinary epoch's time over the graphs' epoch's), the
graphs' ratio to the seed, their held-out loss and how many steps were replayed. The time-to-quality run is
then repeated with graphs too, right after the default one (`time_to_loss_with_graphs`).

    python bench/train_throughput.py [--tiny] [--pairs N] [--precision auto|fp32|bf16] [--max-tokens N]
                                     [--no-time-to-loss] [--max-epochs N] [--compare-batches N,N]
                                     [--compare-beta2 B,B] [--compare-lr R,R] [--compare-graphs]

The last line printed is one JSON object with the figures. One is printed after the throughput and after each
time-to-quality run as well, each holding every figure so far: a run stopped part-way keeps what it measured. A
comparison that fails (out of memory, a CUDA graph replay that fails) has {"error": ...} in its figures' place
(`time_to_loss_error` for the default time-to-quality run) and the runs after it still run.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks import hardware  # noqa: E402

if __name__ == "__main__":
    hardware.preload_tcmalloc()  # measured with the allocator the steps run with (python -m tasks)

from tasks.config import PipelineParams  # noqa: E402
from tasks.train import automatic, batching, passes  # noqa: E402
from tasks.train import loop as trainloop  # noqa: E402
from tasks.train.precision import choose_precision  # noqa: E402

OPUS_MT = {"vocab_size": 58101, "d_model": 512, "layers": 6, "heads": 8, "ffn_dim": 2048}
TINY = {"vocab_size": 1000, "d_model": 64, "layers": 2, "heads": 2, "ffn_dim": 128}


def synthetic_pairs(n: int, vocab: int, seed: int, max_len: int = 128) -> batching.Encoded:
    """Zipf-distributed tokens, log-normal lengths (median ~20, long tail), targets a function of sources."""
    import numpy as np

    # The "translation" of each source token is the same for every seed: held-out pairs must come from the
    # language the model was trained on, or training makes their loss worse, not better.
    mapping = np.random.default_rng(0).permutation(vocab - 2)
    rng = np.random.default_rng(seed)
    sources, targets = [], []
    for _ in range(n):
        src_len = int(np.clip(rng.lognormal(math.log(20), 0.6), 3, max_len - 1))
        tgt_len = int(np.clip(round(src_len * rng.uniform(0.9, 1.3)), 3, max_len - 1))
        src = (rng.zipf(1.3, src_len) % (vocab - 2)).tolist()
        tgt = [int(mapping[t]) for t in src][:tgt_len]
        tgt += (rng.zipf(1.3, tgt_len - len(tgt)) % (vocab - 2)).tolist()
        sources.append(src + [0])  # 0 is </s>, as in Marian
        targets.append(tgt + [0])
    return batching.Encoded(sources, targets)


def build_model(dims: dict, seed: int = 0):
    import torch
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(seed)
    pad = dims["vocab_size"] - 1
    config = MarianConfig(vocab_size=dims["vocab_size"], decoder_vocab_size=dims["vocab_size"],
                          d_model=dims["d_model"], encoder_layers=dims["layers"], decoder_layers=dims["layers"],
                          encoder_attention_heads=dims["heads"], decoder_attention_heads=dims["heads"],
                          encoder_ffn_dim=dims["ffn_dim"], decoder_ffn_dim=dims["ffn_dim"], pad_token_id=pad,
                          eos_token_id=0, decoder_start_token_id=pad, max_position_embeddings=512,
                          share_encoder_decoder_embeddings=True, scale_embedding=True, activation_function="swish")
    return MarianMTModel(config)


def pad_only_tokenizer(vocab_size: int):
    """DataCollatorForSeq2Seq pads through a tokenizer; this one knows only Marian's pad id."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(vocab_size - 1)} | {"<pad>": vocab_size - 1}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="t1")), pad_token="<pad>",
                                   eos_token="t0", unk_token="t1")


def run_seed(dims: dict, data: batching.Encoded, device):
    """One epoch of the seed recipe; returns (seconds, trained model)."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    model = build_model(dims)
    tokenizer = pad_only_tokenizer(dims["vocab_size"])
    dataset = Dataset.from_dict({"input_ids": data.sources, "labels": data.targets})
    with tempfile.TemporaryDirectory() as out:
        args = Seq2SeqTrainingArguments(
            output_dir=out, learning_rate=2e-5, per_device_train_batch_size=16, weight_decay=0.01,
            num_train_epochs=1, save_strategy="no", report_to=[], disable_tqdm=True, logging_steps=10**9,
            use_cpu=device.type == "cpu", seed=0)
        trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=dataset,
                                 data_collator=DataCollatorForSeq2Seq(tokenizer=tokenizer, model=model))
        _sync(device)
        started = time.perf_counter()
        trainer.train()
        _sync(device)
        seconds = time.perf_counter() - started
    return seconds, model


def run_project(dims: dict, data: batching.Encoded, device, precision: str, max_tokens: int, *,
                epochs: float = 1, validation: batching.Encoded | None = None, target_loss: float = 0.0,
                overrides: dict | None = None, model_seed: int = 0):
    """The project's training loop with the run config's defaults; returns (seconds, model, the loop's report).

    Without `validation`: `epochs` epochs, no validation. With it and a `target_loss`: until the validation loss
    reaches the target (a validation every quarter epoch), for at most `epochs` epochs. `overrides`: loop settings
    to change from the run config's defaults (a comparison's learning rate or Adam β2); `model_seed`: the
    initial weights'.
    """
    defaults = PipelineParams()
    model = build_model(dims, model_seed)
    pad = dims["vocab_size"] - 1
    settings = trainloop.LoopSettings(
        learning_rate=defaults.learning_rate or 0, weight_decay=defaults.weight_decay, num_train_epochs=epochs,
        max_tokens_per_batch=max_tokens, warmup_steps=defaults.warmup_steps, early_stopping_patience=0,
        eval_every_steps=10**9, checkpoint_every_steps=10**9, precision=precision, log_every_steps=10**9,
        target_loss=target_loss)
    settings = replace(settings, **(overrides or {}))
    if validation is not None:
        settings = replace(settings, eval_every_steps=max(1, batches_per_epoch(data, max_tokens, device) // 4))
    else:
        validation = batching.Encoded(data.sources[:1], data.targets[:1])
    with tempfile.TemporaryDirectory() as out:
        _sync(device)
        started = time.perf_counter()
        report = trainloop.train(model, data, validation, settings, pad_id=pad, decoder_start_id=pad,
                                 checkpoints=trainloop.CheckpointDir(Path(out)), device=device)
        _sync(device)
        seconds = time.perf_counter() - started
    return seconds, model, report


def warm_up(dims: dict, data: batching.Encoded, device, precision: str, max_tokens: int) -> None:
    """Both paths once, untimed, on a few pairs: no timed figure then pays the process's one-time costs (the CUDA
    context's kernels and handles, the allocator's pools). On an H200 the project's first epoch in a process took
    17.7 s and a second 9.1 s, while the time-to-quality runs came after three project epochs and the seed's only
    after a forward pass: cold against warm, the ratio flattered the project."""
    few = batching.Encoded(data.sources[:64], data.targets[:64])
    run_seed(dims, few, device)
    run_project(dims, few, device, precision, max_tokens)
    _empty_cache()


def batches_per_epoch(data: batching.Encoded, max_tokens: int, device) -> int:
    return len(batching.make_batches(data, max_tokens, trainloop.LoopSettings.max_sentences_per_batch, 0, 0,
                                     multiple=batching.pad_multiple(device)))


def time_to_loss(dims: dict, train_data: batching.Encoded, heldout: batching.Encoded, device, precision: str,
                 max_tokens: int, max_epochs: float, seed_loss: float, seed_seconds: float,
                 overrides: dict | None = None) -> dict:
    """A fresh model trained until its held-out loss reaches the seed's one-epoch loss, at this token budget."""
    seconds, model, reached = run_project(dims, train_data, device, precision, max_tokens, epochs=max_epochs,
                                          validation=heldout, target_loss=seed_loss, overrides=overrides)
    got_there = reached["stopped_by"] == "target loss"
    return {"time_to_loss_ratio": round(seed_seconds / seconds, 2) if got_there else None,
            "project_time_to_loss_seconds": round(seconds, 2) if got_there else None,
            "project_time_to_loss_steps": reached["steps"],
            "project_time_to_loss_epochs": round(reached["steps"] / batches_per_epoch(train_data, max_tokens,
                                                                                        device), 2),
            "project_time_to_loss_heldout": round(heldout_loss(model, heldout, dims, device), 4),
            "learning_rate": reached["learning_rate"], "warmup_steps": reached["warmup_steps"],
            "scheduled_steps": reached["scheduled_steps"], "cuda_graphs": reached["cuda_graphs"],
            "validations": reached["validations"]}


def training_flops(dims: dict, data: batching.Encoded) -> float:
    """The matrix arithmetic of one training pass over `data`'s real tokens (padding excluded): forward and
    backward, the backward twice the forward. Each source token passes the encoder's projections and feed-forward
    layers and the decoder's cross-attention keys and values; each target token the decoder's layers and the
    output head; attention scores and their weighted sums grow with both lengths. A figure of work done, the
    same for every path over the same data, so its rate shows how near a path runs to the device's peak."""
    d, ffn, layers, vocab = dims["d_model"], dims["ffn_dim"], dims["layers"], dims["vocab_size"]
    forward = 0
    for source, target in zip(data.sources, data.targets):
        s, t = len(source), len(target)
        encoder = s * (4 * d * d + 2 * d * ffn + 2 * d * d) + 2 * s * s * d  # + cross-attention keys, values
        decoder = t * (4 * d * d + 2 * d * d + 2 * d * ffn) + 2 * t * t * d + 2 * t * s * d
        forward += 2 * (layers * (encoder + decoder) + t * d * vocab)
    return 3.0 * forward


def matmul_peak_tflops(device, dtype, size: int) -> float:
    """What one square matrix product of `size` achieves on `device` in `dtype`: the rate the training paths'
    arithmetic is read against (a measured ceiling, not the datasheet's)."""
    import torch

    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    runs = 3 if device.type == "cpu" else 20
    torch.mm(a, b)
    _sync(device)
    started = time.perf_counter()
    for _ in range(runs):
        torch.mm(a, b)
    _sync(device)
    return 2 * size**3 * runs / (time.perf_counter() - started) / 1e12


def unigram_loss(train: batching.Encoded, heldout: batching.Encoded, vocab: int) -> float:
    """Held-out loss (nats per target token, </s> included) of the best model that ignores its source: each token
    at its frequency among the training targets, add-half smoothed over the vocabulary."""
    import numpy as np

    counts = np.bincount(np.concatenate([np.asarray(t) for t in train.targets]), minlength=vocab) + 0.5
    log_p = np.log(counts / counts.sum())
    tokens = np.concatenate([np.asarray(t) for t in heldout.targets])
    return float(-log_p[tokens].mean())


def heldout_loss(model, data: batching.Encoded, dims: dict, device) -> float:
    pad = dims["vocab_size"] - 1
    return passes.evaluate_loss(model.to(device), data, pad, pad, device, choose_precision(device, "fp32"),
                                max_tokens_per_batch=4096)


def arithmetic(dims: dict, data: batching.Encoded, device, precision: str, seed_seconds: float,
               project_seconds: float, tiny: bool) -> dict:
    """Each path's rate of model arithmetic (`training_flops` over its epoch time) and the project's share of what
    one large matrix product reaches on the device in the project's precision."""
    import torch

    flops = training_flops(dims, data)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    peak = matmul_peak_tflops(device, dtype, 256 if tiny else 2048 if device.type == "cpu" else 8192)
    project = flops / project_seconds / 1e12
    return {"training_tflop": _digits(flops / 1e12), "seed_model_tflops": _digits(flops / seed_seconds / 1e12),
            "project_model_tflops": _digits(project), "matmul_peak_tflops": _digits(peak),
            "project_share_of_matmul_peak": _digits(project / peak)}


def _digits(x: float) -> float:
    return float(f"{x:.4g}")


def _native_bf16(device) -> bool:
    from tasks.train.precision import cpu_has_native_bf16, cuda_has_native_bf16

    return cuda_has_native_bf16() if device.type == "cuda" else cpu_has_native_bf16()


def _empty_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="seconds-long smoke run with a tiny model")
    parser.add_argument("--pairs", type=int, help="training pairs (default: 48 tiny, 640 CPU, 16000 GPU)")
    parser.add_argument("--precision", help="the project path's precision (default: bf16 where the device has "
                                            "native bf16, else auto)")
    parser.add_argument("--max-tokens", type=int, help="project tokens per batch (default: the run config's)")
    parser.add_argument("--no-time-to-loss", action="store_true", help="skip the time-to-quality run")
    parser.add_argument("--max-epochs", type=float, default=10,
                        help="epochs the time-to-quality run may take (and schedules its learning rate over)")
    parser.add_argument("--compare-batches", default="",
                        help="comma-separated token budgets to run the time-to-quality run at as well")
    parser.add_argument("--compare-beta2", default="",
                        help="comma-separated Adam β2 values to run the time-to-quality run with as well")
    parser.add_argument("--compare-lr", default="",
                        help="comma-separated peak learning rates to run the time-to-quality run with as well")
    parser.add_argument("--compare-warmup", default="",
                        help="comma-separated warmups (a share of the steps if below 1, else steps) to run the "
                             "time-to-quality run with as well")
    parser.add_argument("--compare-graphs", action="store_true",
                        help="on CUDA, the throughput epoch again with CUDA graphs, and again without")
    return parser.parse_args()


def graphs_comparison(dims: dict, data: batching.Encoded, heldout: batching.Encoded, device, precision: str,
                      max_tokens: int, seed_seconds: float) -> dict:
    """The throughput epoch with steps replayed as CUDA graphs, then an ordinary one, both in a warm process."""
    if device.type != "cuda":
        return {"skipped": "CUDA graphs need a CUDA device"}
    seconds, model, report = run_project(dims, data, device, precision, max_tokens, overrides={"cuda_graphs": True})
    loss = heldout_loss(model, heldout, dims, device)
    del model
    eager_seconds = run_project(dims, data, device, precision, max_tokens)[0]
    return {"seconds": round(seconds, 2), "tokens_per_s": round(data.tokens() / seconds, 1),
            "ratio": round(seed_seconds / seconds, 2), "eager_again_seconds": round(eager_seconds, 2),
            "speedup": round(eager_seconds / seconds, 2), "loss": round(loss, 4), "steps": report["cuda_graphs"]}


def guarded(measure, *args, **kwargs) -> dict:
    """One run's figures, or the error that stopped it in their place (out of memory in a comparison, a failed
    CUDA graph replay): the runs after it still run, and the figures before it are kept."""
    try:
        return measure(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - reported in the figures' place
        traceback.print_exc()
        message = f"{type(err).__name__}: {err}"[:1500]
    gc.collect()  # the failed run's model and optimizer state, before the next run needs the memory
    _empty_cache()
    return {"error": message}


def time_to_loss_runs(args: argparse.Namespace, run):
    """The time-to-quality runs, the default first; yields the figures so far after each run. `run(max_tokens,
    overrides)` is one run's figures. The default run's figures sit at the top level (`time_to_loss_error` if it
    failed), each comparison under `time_to_loss_by_<what>`, keyed by its value ({"error": ...} if it failed)."""
    by_batch = {str(args.max_tokens): guarded(run, args.max_tokens, None)}
    default = by_batch[str(args.max_tokens)]
    figures = {k: v for k, v in default.items() if k not in ("learning_rate", "cuda_graphs", "error")}
    if "error" in default:
        figures["time_to_loss_error"] = default["error"]
    yield figures
    if args.compare_graphs and args.cuda:
        figures["time_to_loss_with_graphs"] = guarded(run, args.max_tokens, {"cuda_graphs": True})
        yield figures
    for tokens_per_batch in (int(t) for t in args.compare_batches.split(",") if t.strip()):
        by_batch[str(tokens_per_batch)] = guarded(run, tokens_per_batch, None)
        figures["time_to_loss_by_batch"] = by_batch
        yield figures
    for name, field, values in (("beta2", "adam_beta2", args.compare_beta2), ("lr", "learning_rate", args.compare_lr),
                                ("warmup", "warmup_steps", args.compare_warmup)):
        for value in (v.strip() for v in values.split(",")):
            if value:
                runs = figures.setdefault(f"time_to_loss_by_{name}", {})
                runs[value] = guarded(run, args.max_tokens, {field: float(value)})
                yield figures


def main() -> None:
    """Prints the figures as a JSON line after each part (the throughput, then each time-to-quality run), each
    line holding all figures so far: a run stopped part-way (bench/gpu.py's time limit) keeps what it measured."""
    import torch

    args = _arguments()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.cuda = device.type == "cuda"
    dims = TINY if args.tiny else OPUS_MT
    pairs = args.pairs or (48 if args.tiny else 16000 if device.type == "cuda" else 640)
    args.max_tokens = args.max_tokens or (512 if args.tiny else PipelineParams().max_tokens_per_batch)
    if args.max_tokens == 0:  # the run config's automatic batch, as the loop would choose it on this device
        args.max_tokens = automatic.AUTO_TOKENS_PER_BATCH.get(device.type, automatic.AUTO_TOKENS_PER_BATCH["cuda"])
    precision = args.precision or ("bf16" if _native_bf16(device) else "auto")
    train_data = synthetic_pairs(pairs, dims["vocab_size"], seed=1)
    heldout = synthetic_pairs(max(16, pairs // 10), dims["vocab_size"], seed=2)
    tokens = train_data.tokens()

    initial_loss = heldout_loss(build_model(dims), heldout, dims, device)
    warm_up(dims, train_data, device, precision, args.max_tokens)
    seed_seconds, seed_model = run_seed(dims, train_data, device)
    seed_loss = heldout_loss(seed_model, heldout, dims, device)
    del seed_model
    project_seconds, project_model, report = run_project(dims, train_data, device, precision, args.max_tokens)
    project_loss = heldout_loss(project_model, heldout, dims, device)
    del project_model
    result = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}",
        "allocator": hardware.allocator(),
        "model": "tiny" if args.tiny else "opus-mt-en-de shape (d512, 6+6, vocab 58101, swish, scaled embeddings)",
        "pairs": pairs, "tokens": tokens,
        "seed_seconds": round(seed_seconds, 2), "project_seconds": round(project_seconds, 2),
        "seed_tokens_per_s": round(tokens / seed_seconds, 1),
        "project_tokens_per_s": round(tokens / project_seconds, 1),
        "ratio": round(seed_seconds / project_seconds, 2),
        "seed_loss": round(seed_loss, 4), "project_loss": round(project_loss, 4),
        "initial_loss": round(initial_loss, 4),
        "unigram_loss": round(unigram_loss(train_data, heldout, dims["vocab_size"]), 4),
        "seed_steps": math.ceil(pairs / 16),
        "project_steps": report["steps"], "project_precision": report["precision"],
        "project_max_tokens_per_batch": report["tokens_per_batch"],
        "project_learning_rate": report["learning_rate"],
    }
    result.update(arithmetic(dims, train_data, device, report["precision"], seed_seconds, project_seconds,
                             tiny=args.tiny))
    print(json.dumps(result), flush=True)
    if args.compare_graphs:
        result["graphs"] = guarded(graphs_comparison, dims, train_data, heldout, device, precision, args.max_tokens,
                                   seed_seconds)
        print(json.dumps(result), flush=True)
    if args.no_time_to_loss:
        return

    def run(max_tokens: int, overrides: dict | None) -> dict:
        return time_to_loss(dims, train_data, heldout, device, precision, max_tokens, args.max_epochs, seed_loss,
                            seed_seconds, overrides=overrides)

    for figures in time_to_loss_runs(args, run):
        print(json.dumps({**result, **figures}), flush=True)


if __name__ == "__main__":
    main()
