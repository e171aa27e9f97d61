"""How likely a model finds a target given a source: the mean log-probability per target token, teacher forced.

Evaluation asks a model to write translations; the alignment screen (tasks/data/alignment.py) asks the same model
to read pairs. One forward pass per pair, no search: pairs go through in length-sorted batches within a token
budget (tasks/train/batching.py), on the GPU in bf16 where it has native bf16, else in fp32, through the training
loss's fused head without gradients (tasks/train/tokenloss.py: no vocabulary-wide logits); the log-softmax is
taken in fp32 either way. Each side is tokenized once, so a target scored against several sources costs its
tokenization once.
"""

from __future__ import annotations

import logging
from typing import Sequence

from tasks.train import batching, families, feed, tokenloss
from tasks.train.precision import cuda_has_native_bf16, shape_agnostic_attention

log = logging.getLogger(__name__)

# Padded tokens per forward pass. On CPU past ~4k the logits (tokens × vocabulary) no longer fit in cache and
# throughput falls; on a GPU larger batches keep the chip busy.
CPU_MAX_TOKENS = 4096
GPU_MAX_TOKENS = 32768


class PairScorer:
    def __init__(self, model_dir: str, source_lang: str, target_lang: str, *, max_source_length: int = 128,
                 max_target_length: int = 128, max_tokens: int | None = None, label: str | None = None):
        """`label`: what the reports call the model (a Hub model's `name@commit`), else its folder."""
        import torch
        from transformers import AutoTokenizer

        self.model_dir, self.label = str(model_dir), label or str(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        model = families.load_model(self.model_dir)  # fp32 weights, whatever dtype the model was saved in
        self.family = families.prepare(model, self.tokenizer, source_lang, target_lang)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        shape_agnostic_attention(device)
        self.precision = "fp32"
        if device.type == "cuda" and cuda_has_native_bf16():
            model, self.precision = model.to(torch.bfloat16), "bf16"
        self.model, self.device = model.to(device).eval(), device
        self.max_source_length, self.max_target_length = batching.model_limits(
            self.tokenizer, max_source_length, max_target_length, model.config)
        self.max_tokens = max_tokens or (GPU_MAX_TOKENS if device.type == "cuda" else CPU_MAX_TOKENS)
        self.pad_id = model.config.pad_token_id
        self.start_id = model.config.decoder_start_token_id

    def encode(self, sources: Sequence[str], targets: Sequence[str]) -> batching.Encoded:
        return batching.encode(self.tokenizer, self.family.source_texts(list(sources)), list(targets),
                               self.max_source_length, self.max_target_length,
                               workers=batching.encode_workers(self.tokenizer, len(sources)))

    def score(self, data: batching.Encoded, pairs: Sequence[tuple[int, int]]) -> list[float]:
        """For each (source index, target index) of `data`: the target's mean log-probability per token
        (end-of-sentence included) given that source, in nats."""
        import torch

        paired = batching.Encoded([data.sources[s] for s, _ in pairs], [data.targets[t] for _, t in pairs])
        multiple = batching.pad_multiple(self.device)
        scores = [0.0] * len(pairs)
        batches = batching.make_batches(paired, self.max_tokens, max_sentences=4096, seed=0, epoch=0,
                                        shuffle=False, multiple=multiple)
        with torch.inference_mode():
            for batch in batches:
                (piece,) = feed.prepare(paired, batch, 0, self.pad_id, self.start_id, multiple,
                                        pin=self.device.type == "cuda")
                tensors = piece.to(self.device)
                logp = tokenloss.target_log_probs(self.model, **tensors)
                # Each token's row in the batch, then the rows' sums: per-pair log-probabilities.
                row_of = torch.div(tensors["target_rows"], tensors["labels"].shape[1], rounding_mode="floor")
                sums = torch.zeros(len(batch), dtype=torch.float32, device=self.device).index_add_(0, row_of, logp)
                for i, value in zip(batch, sums.tolist()):
                    scores[i] = value / max(len(paired.targets[i]), 1)
        return scores

    def describe(self) -> dict:
        return {"model": self.label, "device": self.device.type, "precision": self.precision,
                "family": self.family.name, "max_tokens_per_batch": self.max_tokens}
