"""What one batch does on the device: the gradients of a training batch (over its micro-batches), and the
validation loss over a whole set through the fused head.
"""

from __future__ import annotations

import contextlib

from tasks.train import batching, distributed, feed, tokenloss
from tasks.train.precision import Precision, autocast


def forward_backward(net, pieces: list[feed.Piece], device, precision: Precision, scaler, world_size: int,
                     cache: bool = True):
    """Gradients of the mean token loss over the step's target tokens, accumulated over its micro-batches;
    returns this rank's mean token loss, on the device (reading it would wait for the step).

    `net` is a `tokenloss.token_loss_module` (or its data-parallel wrapper). Each micro-batch's mean loss is
    weighted by its share of the batch's target tokens, so the gradient is the one the whole batch would
    give. With data-parallel ranks the step is all ranks' batches: they add up their token counts (on the
    device, without waiting for it) and weigh their losses by their share of that sum, times the number of
    ranks that the gradients' average then divides by; so a token weighs the same whichever rank saw it, as
    in one batch. Gradients are synchronized on the last piece only. `cache`: autocast's (precision.autocast).
    """
    import torch

    total = max(sum(piece.target_tokens for piece in pieces), 1)
    to_step = None  # this rank's weight in the step's mean, with several ranks
    if world_size > 1:
        import torch.distributed as dist

        all_tokens = torch.full((), float(total), device=device)  # a fill: torch.tensor would copy and wait
        dist.all_reduce(all_tokens)
        to_step = total * world_size / all_tokens
    loss = torch.zeros((), device=device)
    for k, piece in enumerate(pieces):
        quiet = net.no_sync() if world_size > 1 and k < len(pieces) - 1 else contextlib.nullcontext()
        with quiet:
            with autocast(device, precision, cache):
                piece_loss = net(**piece.to(device)) * (piece.target_tokens / total)
            scaler.scale(piece_loss if to_step is None else piece_loss * to_step).backward()
        loss = loss + piece_loss.detach().float()
    return loss


def evaluate_loss(model, data: batching.Encoded, pad_id: int, start_id: int, device, precision: Precision, *,
                  max_tokens_per_batch: int, max_sentences_per_batch: int = 512, rank: int = 0,
                  world_size: int = 1) -> float:
    """Mean cross-entropy per target token over the whole validation set.

    Through the fused head without gradients (tokenloss.target_log_probs): no vocabulary-wide logits, and the
    sum stays on the device until the end. Data-parallel ranks each score a share of the batches and add up
    the sums, so every rank gets the same number and takes the same early-stopping decision (a rank that
    stopped alone would hang the rest).
    """
    import torch

    model.eval()
    total, count = torch.zeros((), dtype=torch.float64, device=device), 0
    multiple = batching.pad_multiple(device)
    batches = batching.make_batches(data, max_tokens_per_batch, max_sentences_per_batch,
                                    seed=0, epoch=0, shuffle=False, multiple=multiple)
    pin = device.type == "cuda"
    with torch.inference_mode():
        for batch in batches[rank::world_size]:
            (piece,) = feed.prepare(data, batch, 0, pad_id, start_id, multiple, pin)
            with autocast(device, precision):
                total -= tokenloss.target_log_probs(model, **piece.to(device)).sum(dtype=torch.float64)
            count += piece.target_tokens
    total = total.item()
    if world_size > 1:
        total, count = distributed.sum_over_ranks([total, float(count)])
    model.train()
    return total / max(count, 1)
