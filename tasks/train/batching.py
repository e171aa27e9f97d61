"""Token-budget batches of similar-length pairs, padded to multiples of 8 on GPUs.

The seed recipe draws 16 random sentences per step and pads them to the longest, so most of each batch is
padding and small batches starve the GPU. Here pairs of similar length are grouped until a batch holds
`max_tokens` (padded) tokens; the batch order is reshuffled every epoch from (seed, epoch), so a resumed run
sees exactly the batches it would have seen.

Sequence lengths are rounded up to multiples of 8 on CUDA (tensor cores, and fewer distinct shapes), not on
CPU: there the rounding was a tenth of all the compute for sentences of typical length (bench: 78% → 86% of
the padded tokens real).
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import random
from dataclasses import dataclass

import numpy as np

from tasks import hardware

log = logging.getLogger(__name__)

PAD_MULTIPLE = 8  # tensor cores want dimensions divisible by 8
ENCODE_CHUNK = 4096  # pairs per tokenizer call (and per piece of work for `encode`'s workers)
# Below this many pairs, starting tokenizer processes (a second or two each: Python, then transformers as the
# tokenizer is unpickled) costs more than it saves: a slow (Python) tokenizer encodes some 11,000 pairs a second.
PARALLEL_MIN_PAIRS = 50_000
MAX_ENCODE_WORKERS = 16
_worker_encoder = None  # (tokenizer, limits) in an `encode` worker process


def pad_multiple(device) -> int:
    """What sequence lengths are rounded up to on `device`."""
    return PAD_MULTIPLE if device.type == "cuda" else 1


def _round_up(n: int, multiple: int = PAD_MULTIPLE) -> int:
    return -(-n // multiple) * multiple


@dataclass(frozen=True)
class Encoded:
    """A tokenized corpus: token ids per source and target, without padding."""

    sources: list[list[int]]
    targets: list[list[int]]

    def __len__(self) -> int:
        return len(self.sources)

    def length(self, i: int) -> int:
        """The longer side of pair `i`, in tokens: what its row is padded to in a batch."""
        return max(len(self.sources[i]), len(self.targets[i]))

    def tokens(self, indices: list[int] | range | None = None) -> int:
        idx = range(len(self)) if indices is None else indices
        return sum(len(self.sources[i]) + len(self.targets[i]) for i in idx)


def encode(tokenizer, sources: list[str], targets: list[str], max_source_length: int, max_target_length: int,
           workers: int = 1) -> Encoded:
    """Token ids of every pair, in order; in `workers` processes when more than one (`encode_workers`), each with
    a copy of `tokenizer` as the caller prepared it, so the ids are the same whatever the number of workers."""
    limits = model_limits(tokenizer, max_source_length, max_target_length)
    chunks = [(sources[start:start + ENCODE_CHUNK], targets[start:start + ENCODE_CHUNK])
              for start in range(0, len(sources), ENCODE_CHUNK)]
    if workers > 1 and len(chunks) > 1 and _picklable(tokenizer):
        # spawn, not fork: the caller may hold threads (boto3's, a process group's) and their locks.
        context = multiprocessing.get_context("spawn")
        with context.Pool(min(workers, len(chunks)), initializer=_start_encoder, initargs=(tokenizer, limits)) as pool:
            parts = pool.map(_encode_in_worker, chunks, chunksize=1)
    else:
        parts = [_encode_chunk(tokenizer, limits, chunk) for chunk in chunks]
    return Encoded([ids for part in parts for ids in part[0]], [ids for part in parts for ids in part[1]])


def position_limit(tokenizer, model_config=None) -> int | None:
    """How many tokens a sequence of this model may hold: the tokenizer's `model_max_length` and, given the model's
    config, its `max_position_embeddings` (Marian's, mBART's, M2M100's table of positions), the smaller; None when
    neither is known (transformers' 1e30 sentinel; T5's relative positions have no table)."""
    limits = [getattr(tokenizer, "model_max_length", None), getattr(model_config, "max_position_embeddings", None)]
    known = [most for most in limits if isinstance(most, int) and 0 < most < 10**6]
    return min(known) if known else None


def model_limits(tokenizer, max_source_length: int, max_target_length: int, model_config=None) -> tuple[int, int]:
    """The length limits, at most what the model's positions hold (`position_limit`). Past it a sequence was an
    IndexError (a device-side assert on CUDA) at the first batch that held it, in training and in the alignment
    screen, and again every week after, as the pair stays in the corpus."""
    most = position_limit(tokenizer, model_config)
    if most is None:
        return max_source_length, max_target_length
    limits = (min(max_source_length, most), min(max_target_length, most))
    if limits != (max_source_length, max_target_length):
        log.warning("max_source_length %d / max_target_length %d: the model takes at most %d tokens, so longer "
                    "sequences are truncated to %d", max_source_length, max_target_length, most, most)
    return limits


def encode_workers(tokenizer, pairs: int, processes_here: int = 1) -> int:
    """How many processes `encode` should tokenize `pairs` pairs in: one for a small corpus or a fast (Rust)
    tokenizer, which already encodes a batch on several threads; else this process's share of the CPUs
    (`processes_here`: the training processes on this machine, which each tokenize at once)."""
    if pairs < PARALLEL_MIN_PAIRS or getattr(tokenizer, "is_fast", False):
        return 1
    # At most MAX_ENCODE_WORKERS on the machine in all: each worker imports transformers (some 300 MB).
    return max(1, min(hardware.usable_cpus(), MAX_ENCODE_WORKERS) // max(processes_here, 1))


def _picklable(tokenizer) -> bool:
    """Whether the tokenizer can travel to the workers; one that cannot is used in this process (logged)."""
    try:
        pickle.dumps(tokenizer)
        return True
    except Exception as err:  # noqa: BLE001 - any failure to pickle: tokenize here, as before
        log.warning("tokenizing in this process only: the tokenizer cannot be sent to workers (%s: %s)",
                    type(err).__name__, err)
        return False


def _encode_chunk(tokenizer, limits: tuple[int, int], chunk: tuple[list[str], list[str]]):
    # Two calls, each side with its own limit: one call applies `max_length` to both, so a longer target limit
    # had no effect and a shorter one was a slice that cut off the end-of-sentence token.
    sources, targets = chunk
    return (tokenizer(sources, max_length=limits[0], truncation=True)["input_ids"],
            tokenizer(text_target=targets, max_length=limits[1], truncation=True)["input_ids"])


def _start_encoder(tokenizer, limits: tuple[int, int]) -> None:
    global _worker_encoder
    _worker_encoder = (tokenizer, limits)


def _encode_in_worker(chunk: tuple[list[str], list[str]]):
    return _encode_chunk(*_worker_encoder, chunk)


def make_batches(data: Encoded, max_tokens: int, max_sentences: int, seed: int, epoch: int,
                 shuffle: bool = True, multiple: int = PAD_MULTIPLE) -> list[list[int]]:
    """Index batches whose padded size (sentences × longest side) stays within `max_tokens`."""
    rng = random.Random(seed * 100_003 + epoch)
    lengths = [data.length(i) for i in range(len(data))]
    # A little noise in the sort key varies batch composition between epochs without mixing lengths much.
    order = sorted(range(len(data)), key=lambda i: lengths[i] + (rng.random() if shuffle else 0.0))
    batches = _pack(order, lengths, max_tokens, max_sentences, multiple)
    if shuffle:
        rng.shuffle(batches)
    return batches


def for_ranks(batches: list[list[int]], ranks: int) -> list[list[int]]:
    """`batches` with the largest split in two until their count is a multiple of `ranks` (data-parallel workers).

    Each rank takes every `ranks`-th batch and a step is one batch of each, so a remainder is left out of the
    epoch: with 36 batches on 8 GPUs a tenth of the pairs; a pair left out of every epoch is never trained on.
    Halves of a batch stay within its token budget. A batch of one pair cannot be split: with fewer pairs than
    ranks the remainder is still left out.
    """
    batches = list(batches)
    while ranks > 1 and len(batches) % ranks:
        at = max(range(len(batches)), key=lambda i: len(batches[i]))
        if len(batches[at]) < 2:
            break
        half = len(batches[at]) // 2
        batches[at:at + 1] = [batches[at][:half], batches[at][half:]]
    return batches


def micro_batches(data: Encoded, batch: list[int], max_tokens: int, multiple: int = PAD_MULTIPLE) -> list[list[int]]:
    """`batch` cut into pieces of at most `max_tokens` padded tokens each (0: the batch whole), for
    gradient accumulation: the optimizer still sees one batch of the configured size."""
    if max_tokens <= 0:
        return [batch]
    lengths = {i: data.length(i) for i in batch}
    return _pack(sorted(batch, key=lengths.__getitem__), lengths, max_tokens, len(batch), multiple)


def _pack(order: list[int], lengths: list[int] | dict[int, int], max_tokens: int, max_sentences: int,
          multiple: int) -> list[list[int]]:
    """Consecutive runs of `order` whose padded size (sentences × longest side) stays within `max_tokens`."""
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        new_longest = _round_up(max(longest, lengths[i]), multiple)
        if current and (new_longest * (len(current) + 1) > max_tokens or len(current) >= max_sentences):
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, lengths[i])
    if current:
        batches.append(current)
    return batches


def collate(data: Encoded, batch: list[int], pad_id: int, decoder_start_id: int, multiple: int = PAD_MULTIPLE):
    """Tensors for one batch: inputs, attention mask, decoder inputs, labels (-100 on padding) and
    `target_rows`, the flat positions of the real target tokens in labels (row × length + column).

    `target_rows` lets the loss gather the real tokens with an index computed here, on the host, instead of a
    boolean mask, whose size a GPU would have to report back (a sync per batch). Built in numpy: a tensor per
    row cost more host time than a tiny model's forward pass.
    """
    import torch

    sources, targets = [data.sources[i] for i in batch], [data.targets[i] for i in batch]
    src_len = _round_up(max(map(len, sources)), multiple)
    tgt_len = _round_up(max(map(len, targets)), multiple)
    input_ids = np.full((len(batch), src_len), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(batch), src_len), dtype=np.int64)
    labels = np.full((len(batch), tgt_len), -100, dtype=np.int64)
    decoder_input_ids = np.full((len(batch), tgt_len), pad_id, dtype=np.int64)
    decoder_input_ids[:, 0] = decoder_start_id
    for row, (src, tgt) in enumerate(zip(sources, targets)):
        input_ids[row, :len(src)] = src
        attention_mask[row, :len(src)] = 1
        labels[row, :len(tgt)] = tgt
        decoder_input_ids[row, 1:len(tgt)] = tgt[:-1]
    target_rows = np.flatnonzero(labels != -100)
    return {name: torch.from_numpy(array) for name, array in (
        ("input_ids", input_ids), ("attention_mask", attention_mask), ("decoder_input_ids", decoder_input_ids),
        ("labels", labels), ("target_rows", target_rows))}
