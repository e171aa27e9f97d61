"""The project's training loop: token-budget batches, automatic mixed precision, checkpoints that resume.

It replaces Seq2SeqTrainer on the hot path because fine-tuning cost is dominated by what Trainer leaves
alone (padding, small batches, fp32) — see bench/train_throughput.py for the comparison in one run. What
it keeps from the seed recipe: AdamW with weight decay, linear warmup then decay, cross-entropy on the
target tokens. What it adds: the best model by validation loss (not the last), early stopping, progress
with tokens/s and ETA, and resumption from the last checkpoint after a crash or a killed pod.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from tasks import batching, tokenloss
from tasks.precision import Precision, autocast, choose_precision

log = logging.getLogger(__name__)

STATE = "state.pt"


@dataclass(frozen=True)
class LoopSettings:
    learning_rate: float
    weight_decay: float
    num_train_epochs: float
    max_tokens_per_batch: int
    max_sentences_per_batch: int = 512
    warmup_steps: float = 0.05  # < 1: a share of all steps
    adam_beta2: float = 0.98  # Marian's and fairseq's choice for transformers; Trainer's 0.999 adapts slower
    max_steps: int = 0  # > 0 caps training whatever the epochs say
    eval_every_steps: int = 0  # 0: once per epoch
    early_stopping_patience: int = 3  # evaluations without improvement before stopping; 0: never stop early
    checkpoint_every_steps: int = 200
    precision: str = "auto"
    seed: int = 42
    log_every_steps: int = 20


# Tokens per optimizer batch when the run config says 0. A GPU needs big batches to stay busy; on CPU the
# throughput is flat in batch size (bench/train_throughput.py: 1047, 1043, 1037 tokens/s at 2048, 4096,
# 12288), so small batches give more updates per token for free: the CPU bench's epoch ended at a held-out
# loss of 8.38 with 2048 against 9.04 with 12288 (the seed recipe: 8.43).
AUTO_TOKENS_PER_BATCH = {"cuda": 12288, "cpu": 2048}
# Bigger CPU batches run as micro-batches of this size: one 12288-token batch ran at half the speed.
CPU_MICRO_BATCH_TOKENS = 2048


@dataclass
class Progress:
    """Everything needed to continue exactly where a killed run stopped."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_loss: float = math.inf
    best_step: int = 0
    evals_without_improvement: int = 0
    tokens_seen: int = 0


def _forward_backward(net, data: batching.Encoded, batch: list[int], micro_tokens: int, pad_id: int,
                      start_id: int, device, precision: Precision, scaler, world_size: int):
    """Gradients of the batch's mean token loss, accumulated over its micro-batches; returns that loss.

    `net` is a `tokenloss.token_loss_module` (or its data-parallel wrapper). Each micro-batch's mean loss is
    weighted by its share of the batch's target tokens, so the gradient is the one the whole batch would
    give. Data-parallel ranks synchronize gradients on the last piece only.
    """
    import torch

    multiple = batching.pad_multiple(device)
    pieces = [batching.collate(data, piece, pad_id, start_id, multiple)
              for piece in batching.micro_batches(data, batch, micro_tokens, multiple)]
    counts = [int((p["labels"] != -100).sum()) for p in pieces]
    total = max(sum(counts), 1)
    loss = torch.zeros((), device=device)
    for k, (piece, count) in enumerate(zip(pieces, counts)):
        tensors = {name: value.to(device, non_blocking=True) for name, value in piece.items()}
        quiet = net.no_sync() if world_size > 1 and k < len(pieces) - 1 else contextlib.nullcontext()
        with quiet:
            with autocast(device, precision):
                piece_loss = net(**tensors) * (count / total)
            scaler.scale(piece_loss).backward()
        loss = loss + piece_loss.detach().float()
    return loss


def evaluate_loss(model, data: batching.Encoded, settings: LoopSettings, pad_id: int, start_id: int,
                  device, precision: Precision, rank: int = 0, world_size: int = 1) -> float:
    """Mean cross-entropy per target token over the whole validation set.

    Data-parallel ranks each score a share of the batches and add up the sums, so every rank gets the
    same number and takes the same early-stopping decision (a rank that stopped alone would hang the rest).
    """
    import torch

    model.eval()
    total, count = 0.0, 0
    multiple = batching.pad_multiple(device)
    batches = batching.make_batches(data, settings.max_tokens_per_batch, settings.max_sentences_per_batch,
                                    seed=0, epoch=0, shuffle=False, multiple=multiple)
    with torch.inference_mode():
        for batch in batches[rank::world_size]:
            piece = batching.collate(data, batch, pad_id, start_id, multiple)
            tensors = {k: v.to(device) for k, v in piece.items()}
            with autocast(device, precision):
                logits = model(**{k: v for k, v in tensors.items() if k != "labels"}).logits
            loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), tensors["labels"].flatten(),
                                                     ignore_index=-100, reduction="sum")
            total += loss.item()
            count += int((tensors["labels"] != -100).sum())
    if world_size > 1:
        total, count = _sum_over_ranks([total, float(count)])
    model.train()
    return total / max(count, 1)


def _sum_over_ranks(values: list[float]) -> list[float]:
    import torch
    import torch.distributed as dist

    # NCCL reduces only CUDA tensors; gloo only CPU ones.
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


class CheckpointDir:
    """checkpoints/step-NNNNNNNN/state.pt, written to a temp name and renamed; the newest two are kept.

    `on_saved` lets the caller mirror each finished checkpoint to remote storage (S3 run directories).
    """

    def __init__(self, root: Path, on_saved: Callable[[Path], None] | None = None, keep: int = 2):
        self.root, self.on_saved, self.keep = root, on_saved, keep

    def latest(self) -> Path | None:
        done = sorted(p for p in self.root.glob("step-*") if (p / STATE).exists()) if self.root.exists() else []
        return done[-1] if done else None

    def save(self, state: dict, step: int) -> Path:
        import torch

        final = self.root / f"step-{step:08d}"
        tmp = self.root / f".step-{step:08d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(state, tmp / STATE)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in sorted(p for p in self.root.glob("step-*"))[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        if self.on_saved:
            self.on_saved(final)
        return final


def train(model, train_data: batching.Encoded, val_data: batching.Encoded, settings: LoopSettings, *,
          pad_id: int, decoder_start_id: int, checkpoints: CheckpointDir, device=None,
          rank: int = 0, world_size: int = 1) -> dict:
    """Train `model` in place and leave it holding the best weights by validation loss."""
    import torch

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if settings.max_tokens_per_batch == 0:
        settings = replace(settings, max_tokens_per_batch=AUTO_TOKENS_PER_BATCH.get(device.type, AUTO_TOKENS_PER_BATCH["cuda"]))
    precision = choose_precision(device, settings.precision)
    log.info("precision: %s (%s)", precision.name, precision.why)
    torch.manual_seed(settings.seed)
    model.to(device).train()
    net = tokenloss.token_loss_module(model)
    if world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)

    multiple = batching.pad_multiple(device)
    batches_per_epoch = len(batching.make_batches(train_data, settings.max_tokens_per_batch,
                                                  settings.max_sentences_per_batch, settings.seed, 0,
                                                  multiple=multiple)) // world_size
    if batches_per_epoch == 0:
        raise ValueError(f"{len(train_data)} training pairs make fewer batches than the {world_size} workers")
    total_steps = math.ceil(batches_per_epoch * settings.num_train_epochs)
    if settings.max_steps > 0:
        total_steps = min(total_steps, settings.max_steps)
    eval_every = settings.eval_every_steps or batches_per_epoch
    warmup = int(settings.warmup_steps * total_steps) if settings.warmup_steps < 1 else int(settings.warmup_steps)

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:  # frozen weights (LoRA's base, freeze_*) need no optimizer state
            (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=settings.learning_rate,
                                  betas=(0.9, settings.adam_beta2), fused=True)  # one kernel per step, on CPU too (4x faster than foreach there)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(
        (s + 1) / max(warmup, 1), max(0.0, (total_steps - s) / max(total_steps - warmup, 1))))
    scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_scaler)

    progress = Progress()
    best_state: dict | None = None
    resumed_from = checkpoints.latest()
    if resumed_from is not None:
        state = torch.load(resumed_from / STATE, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        progress = Progress(**state["progress"])
        best_state = state.get("best_model")
        log.info("resuming from %s at step %d (epoch %d, batch %d)", resumed_from.name, progress.step,
                 progress.epoch, progress.batch_in_epoch)

    def snapshot() -> dict:
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def checkpoint() -> None:
        if rank == 0:
            checkpoints.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict(), "progress": asdict(progress),
                              "best_model": best_state, "settings": asdict(settings)}, progress.step)

    # On CPU a big batch runs as micro-batches with accumulated gradients: the same optimizer steps, but
    # activations (above all the vocabulary-sized logits) that stay in cache-friendly sizes.
    micro_tokens = CPU_MICRO_BATCH_TOKENS if device.type == "cpu" else 0
    log.info("training: %d pairs, %d batches per epoch (≤ %d tokens each%s), %d steps, warmup %d, on %s",
             len(train_data), batches_per_epoch, settings.max_tokens_per_batch,
             f", in micro-batches of ≤ {micro_tokens}" if micro_tokens else "", total_steps, warmup, device)
    started, window_tokens, window_start = time.monotonic(), 0, time.monotonic()
    steps_at_start, running_loss, running_steps, stop = progress.step, 0.0, 0, False
    while progress.step < total_steps and not stop:
        batches = batching.make_batches(train_data, settings.max_tokens_per_batch,
                                        settings.max_sentences_per_batch, settings.seed, progress.epoch,
                                        multiple=multiple)
        mine = batches[rank::world_size][:batches_per_epoch]
        for batch in mine[progress.batch_in_epoch:]:
            loss = _forward_backward(net, train_data, batch, micro_tokens, pad_id, decoder_start_id, device,
                                     precision, scaler, world_size)
            # Data-parallel ranks skip a batch together or not at all: one rank skipping its step while the
            # others go on would leave their weights apart.
            finite = bool(torch.isfinite(loss)) if world_size == 1 else \
                _sum_over_ranks([float(not torch.isfinite(loss))])[0] == 0
            if not finite:
                precision = precision.after_overflow(loss)
                scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_scaler)
                optimizer.zero_grad(set_to_none=True)
                progress.batch_in_epoch += 1
                continue
            precision.overflows = 0
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            tokens = train_data.tokens(batch) * world_size
            progress.step += 1
            progress.batch_in_epoch += 1
            progress.tokens_seen += tokens
            window_tokens += tokens
            running_loss += loss.item()
            running_steps += 1
            if progress.step % settings.log_every_steps == 0 or progress.step == total_steps:
                now = time.monotonic()
                rate = window_tokens / max(now - window_start, 1e-9)
                per_step = (now - started) / max(progress.step - steps_at_start, 1)
                log.info("step %d/%d  epoch %d  loss %.4f  lr %.2e  %.0f tokens/s  ETA %s", progress.step,
                         total_steps, progress.epoch, running_loss / running_steps,
                         scheduler.get_last_lr()[0], rate, _duration(per_step * (total_steps - progress.step)))
                running_loss, running_steps, window_tokens, window_start = 0.0, 0, 0, now
            if progress.step % eval_every == 0 or progress.step == total_steps:
                val_loss = evaluate_loss(model, val_data, settings, pad_id, decoder_start_id, device, precision,
                                         rank, world_size)
                if val_loss < progress.best_loss:
                    progress.best_loss, progress.best_step = val_loss, progress.step
                    progress.evals_without_improvement = 0
                    best_state = snapshot()
                else:
                    progress.evals_without_improvement += 1
                log.info("step %d  validation loss %.4f  (best %.4f at step %d)", progress.step, val_loss,
                         progress.best_loss, progress.best_step)
                patience = settings.early_stopping_patience
                if patience and progress.evals_without_improvement >= patience:
                    log.info("early stopping: no improvement in %d evaluations", patience)
                    stop = True
            if progress.step % settings.checkpoint_every_steps == 0:
                checkpoint()
            if stop or progress.step >= total_steps:
                break
        else:
            progress.epoch += 1
            progress.batch_in_epoch = 0
    if best_state is not None:
        model.load_state_dict(best_state)
    seconds = time.monotonic() - started
    return {"steps": progress.step, "epochs_completed": progress.epoch, "best_step": progress.best_step,
            "best_validation_loss": round(progress.best_loss, 4), "tokens_seen": progress.tokens_seen,
            "seconds": round(seconds, 1), "precision": precision.name, "device": str(device),
            "tokens_per_batch": settings.max_tokens_per_batch,
            "resumed_from_step": int(resumed_from.name.split("-")[1]) if resumed_from else None,
            "early_stopped": stop, "world_size": world_size}


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


def distributed_context():
    """(rank, world_size, device) from torchrun's environment; (0, 1, None) in a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, None
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world_size, device


def leave_distributed() -> None:
    """Wait until every rank is done (rank 0 saves last), then tear the process group down cleanly."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
