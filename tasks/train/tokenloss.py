"""The training loss of a seq2seq model, computed without its vocabulary-sized logits tensor.

`model(**batch).loss` lets the output head write [tokens, vocabulary] logits (58101 wide for opus-mt), and
then autocast, log-softmax and the backward pass each read and write copies of that tensor: for a
2048-token batch, half a gigabyte per copy. On a CPU those memory passes cost about as much as the head's
matrix products. `TokenLoss` instead runs the model's body, drops the padding rows, and computes head,
log-softmax and gradient together, chunk of rows by chunk of rows, so each chunk's logits stay in cache.
It still keeps one [target tokens, vocabulary] tensor for the backward pass: softmax minus one-hot, the
logits' gradient, in the matmul precision (bf16 on a GPU). Validation and pair scoring keep none
(`target_log_probs`).
The math is the same cross-entropy and the same gradient (tests/tasks/test_tokenloss.py checks both).

On CPU under bf16 autocast it also routes attention through PyTorch's reference (math) kernel: the CPU
flash-attention backward is several times slower in bf16 than in fp32.

Models whose head is `lm_head(hidden) [+ final_logits_bias]` over `model.model`'s output take this path:
Marian (opus-mt), mBART, M2M100 and NLLB. Others (T5 scales its hidden states first) use their own loss.
"""

from __future__ import annotations

import contextlib
import functools

FUSED_HEADS = ("MarianMTModel", "MBartForConditionalGeneration", "M2M100ForConditionalGeneration")
CHUNK_ROWS = {"cpu": 256, "cuda": 4096}  # bench on 2 CPU cores: 64 → 840, 256 → 871, 1024 → 848 tokens/s
# On a GPU the head's vocabulary is padded to a multiple of this inside the loss (the model keeps its own): with
# opus-mt's 58101 words the matmuls otherwise fall back to slow kernels that do not need aligned sizes. The
# padded words get a logit of -inf, so they take no probability and get no gradient.
HEAD_PAD = {"cpu": 1, "cuda": 64}


def _padded_head(weight, bias, dtype, pad_to: int):
    """(weight in the matmul precision with rows padded to a multiple of `pad_to`, the logits' additive shift
    in fp32 or None): the shift is the bias plus -inf on padded rows."""
    import torch

    vocab = weight.shape[0]
    rows = -(-vocab // pad_to) * pad_to
    acc = torch.promote_types(dtype, torch.float32)
    # On CPU an all-zero bias (Marian's is a buffer of zeros) is skipped: adding it is a pass over every chunk.
    # Asking costs a device sync, which a GPU does not pay: there the shift is added whatever it holds.
    if bias is not None and weight.device.type == "cpu" and not bool(bias.any()):
        bias = None
    if rows == vocab:
        return weight.to(dtype), None if bias is None else bias.to(acc)
    padded = torch.zeros(rows, weight.shape[1], dtype=dtype, device=weight.device)
    padded[:vocab] = weight
    shift = torch.full((rows,), float("-inf"), dtype=acc, device=weight.device)
    shift[:vocab] = 0 if bias is None else bias
    return padded, shift


def _chunked_forward(h, w, shift, labels, chunk: int, with_grad: bool = True, ignore: bool = False):
    """(log-probability of each row's label, softmax − onehot per row, gradient of the summed loss with
    respect to `h`), a chunk of rows at a time; `h` and `w` are already in the matmul precision. Without
    `with_grad` only the log-probabilities are computed (validation, scoring). With `ignore`, rows whose label
    is negative (padding's -100) count for nothing: log-probability 0, no gradient."""
    import torch

    rows, vocab, device, dtype = h.shape[0], w.shape[0], h.device, h.dtype
    acc = torch.promote_types(dtype, torch.float32)  # softmax and loss in fp32 at least
    picked_all = torch.empty(rows, dtype=acc, device=device)
    # probs ends up holding softmax - onehot: each row's gradient with respect to its logits.
    probs = torch.empty(rows, vocab, dtype=dtype, device=device) if with_grad else None
    grad_hidden = torch.empty_like(h) if with_grad else None
    # Buffers reused by every chunk: on CPU a fresh vocabulary-wide tensor costs a page fault per 4 KiB, more
    # than the arithmetic done in it.
    size = (min(chunk, rows), vocab)
    scores, logp = torch.empty(size, dtype=acc, device=device), torch.empty(size, dtype=acc, device=device)
    full = dtype == acc  # the matmul already gives fp32 (or float64): no conversions
    raw = scores if full else torch.empty(size, dtype=dtype, device=device)
    for start in range(0, rows, chunk):
        stop = min(start + chunk, rows)
        n, target = stop - start, labels[start:stop]
        if ignore:
            keep = target >= 0
            target = target.clamp(min=0)
        torch.mm(h[start:stop], w.t(), out=raw[:n])
        if not full:
            scores[:n].copy_(raw[:n])
        if shift is not None:
            scores[:n] += shift
        torch.log_softmax(scores[:n], dim=-1, out=logp[:n])
        picked = picked_all[start:stop]
        torch.gather(logp[:n], 1, target[:, None], out=picked[:, None])
        if not with_grad:
            if ignore:
                picked.mul_(keep)
            continue
        p = probs[start:stop]
        if full:
            torch.exp(logp[:n], out=p)
        else:
            torch.exp(logp[:n], out=scores[:n])
            p.copy_(scores[:n])
        # The target's entry is computed in full precision, then rounded once.
        p[torch.arange(n, device=device), target] = (picked.exp() - 1.0).to(dtype)
        if ignore:
            p.mul_(keep[:, None])
            picked.mul_(keep)
        torch.mm(p, w, out=grad_hidden[start:stop])
    return picked_all, probs, grad_hidden


@functools.cache
def _autograd_function():
    """The fused head + cross-entropy as an autograd.Function (built on first use: torch is imported lazily,
    because the Airflow side imports this package without needing it)."""
    import torch

    class HeadCrossEntropy(torch.autograd.Function):
        """Sum over rows of -log softmax(hidden @ weight.T + bias)[label].

        Forward also computes the logits' gradient (softmax - onehot), so the logits never need storing.
        """

        @staticmethod
        def forward(ctx, hidden, weight, bias, labels, dtype, chunk, pad_to, ignore):
            with torch.autocast(hidden.device.type, enabled=False):
                h = hidden.to(dtype)
                w, shift = _padded_head(weight, bias, dtype, pad_to)
                picked, probs, grad_hidden = _chunked_forward(h, w, shift, labels, chunk, ignore=ignore)
            ctx.saved = (probs, h, grad_hidden)
            ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype, picked.dtype)
            ctx.vocab = weight.shape[0]
            return -picked.sum()

        @staticmethod
        def backward(ctx, grad_total):
            probs, h, grad_hidden = ctx.saved
            ctx.saved = None
            hidden_dtype, weight_dtype, bias_dtype, acc = ctx.dtypes
            probs = probs[:, :ctx.vocab]  # padded words have probability 0: nothing to give back
            scale = grad_total.to(acc)
            grad_weight = grad_bias = None
            if ctx.needs_input_grad[1]:
                # The scale goes onto the small [rows, d] factor, not the vocabulary-sized product.
                grad_weight = torch.mm(probs.t(), (h.to(acc) * scale).to(h.dtype)).to(weight_dtype)
            if ctx.needs_input_grad[2]:
                grad_bias = (probs.sum(0, dtype=acc) * scale).to(bias_dtype)
            return (grad_hidden.to(acc) * scale).to(hidden_dtype), grad_weight, grad_bias, None, None, None, None, \
                None

    return HeadCrossEntropy


def _matmul_dtype(hidden):
    import torch

    device_type = hidden.device.type
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else hidden.dtype


def head_cross_entropy(hidden, weight, bias, labels, dtype=None, chunk: int | None = None,
                       pad_to: int | None = None, ignore: bool = False):
    """Summed cross-entropy of `labels` under logits `hidden @ weight.T (+ bias)`, chunked by rows.

    `dtype` is the matmul precision (default: autocast's where it is on, else hidden's); softmax and the
    loss are always fp32, as autocast would do them. `pad_to`: the vocabulary is padded to a multiple of it
    (default: HEAD_PAD for the device). `ignore`: rows labelled -100 (padding) add nothing, which lets a
    batch be scored whole, in shapes that do not depend on how many of its tokens are real.
    """
    device_type = hidden.device.type
    chunk = chunk or CHUNK_ROWS.get(device_type, CHUNK_ROWS["cuda"])
    pad_to = pad_to or HEAD_PAD.get(device_type, HEAD_PAD["cuda"])
    return _autograd_function().apply(hidden, weight, bias, labels, dtype or _matmul_dtype(hidden), chunk, pad_to,
                                      ignore)


def head_log_probs(hidden, weight, bias, labels, chunk: int | None = None, pad_to: int | None = None):
    """log softmax(hidden @ weight.T + bias)[label] per row, in fp32, without gradients: the fused head for
    validation and scoring, which never builds the [rows, vocabulary] logits either."""
    import torch

    device_type = hidden.device.type
    chunk = chunk or CHUNK_ROWS.get(device_type, CHUNK_ROWS["cuda"])
    pad_to = pad_to or HEAD_PAD.get(device_type, HEAD_PAD["cuda"])
    dtype = _matmul_dtype(hidden)
    with torch.no_grad(), torch.autocast(device_type, enabled=False):
        w, shift = _padded_head(weight, bias, dtype, pad_to)
        return _chunked_forward(hidden.to(dtype), w, shift, labels, chunk, with_grad=False)[0]


def fused_head(model):
    """(body, head weight, head bias) of a model whose loss can be fused, else None."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft (LoRA) wrapper
    if type(base).__name__ not in FUSED_HEADS:
        return None
    return base.model, base.lm_head.weight, getattr(base, "final_logits_bias", None)


def _attention_kernels(device):
    """The math attention kernel under bf16 autocast on CPU, where flash attention's backward is slow."""
    import torch

    if device.type != "cpu" or not torch.is_autocast_enabled("cpu") or \
            torch.get_autocast_dtype("cpu") != torch.bfloat16:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def _hidden(body, input_ids, attention_mask, decoder_input_ids):
    """The decoder's last hidden states, reading nothing back from the device under SDPA.

    Given a 2-D source mask, transformers asks whether it holds any padding (`mask.all()`) in the encoder and
    again for cross-attention, and the decoder asks the same of the all-ones mask it makes for itself: each
    question waits for the GPU to finish all it was given, so the host could never prepare a step while the
    last one runs. Masks already shaped for SDPA, (batch, 1, query, key) booleans that broadcast, are passed
    through as they are: the source mask as (batch, 1, 1, source), the decoder's as its causal triangle. Eager
    attention adds its mask to the scores, so it keeps the 2-D one.
    """
    import torch

    decoder_mask = None
    if body.config._attn_implementation == "sdpa":
        if attention_mask is not None and attention_mask.ndim == 2:
            attention_mask = attention_mask[:, None, None, :].bool()
        length = decoder_input_ids.shape[1]
        decoder_mask = torch.ones(length, length, dtype=torch.bool, device=decoder_input_ids.device).tril()[None, None]
    return body(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                decoder_attention_mask=decoder_mask).last_hidden_state


def _gathered(hidden, labels, target_rows):
    """The rows of hidden states and labels at the real target positions (`target_rows` from
    batching.collate); without it, a boolean mask (which a GPU syncs on to size)."""
    flat = hidden.reshape(-1, hidden.shape[-1])
    if target_rows is None:
        keep = labels.reshape(-1) != -100
        return flat[keep], labels.reshape(-1)[keep]
    return flat.index_select(0, target_rows), labels.reshape(-1).index_select(0, target_rows)


def target_log_probs(model, input_ids, attention_mask, decoder_input_ids, labels, target_rows=None):
    """The log-probability of each real target token (in `target_rows` order), teacher forced, without
    gradients: what validation losses and pair scores are made of. Fused models never build their logits."""
    import torch

    fused = fused_head(model)
    with torch.no_grad():
        if fused is None:
            logits = model(input_ids=input_ids, attention_mask=attention_mask,
                           decoder_input_ids=decoder_input_ids).logits
            logits, wanted = _gathered(logits, labels, target_rows)
            return torch.log_softmax(logits.float(), dim=-1).gather(1, wanted[:, None]).squeeze(1)
        body, weight, bias = fused
        hidden = _hidden(body, input_ids, attention_mask, decoder_input_ids)
        rows, wanted = _gathered(hidden, labels, target_rows)
        return head_log_probs(rows, weight, None if bias is None else bias.view(-1), wanted)


def token_loss_module(model):
    """An nn.Module whose forward(**batch) is the mean cross-entropy over the batch's target tokens.

    Data-parallel training wraps this module, not the model, so gradient synchronization covers the fused
    head too.
    """
    import torch

    class TokenLoss(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, decoder_input_ids, labels, target_rows=None):
            # Looked up on every call: moving the model to a device replaces its buffers (the head's bias).
            fused = fused_head(self.model)
            if fused is None:
                return self.model(input_ids=input_ids, attention_mask=attention_mask,
                                  decoder_input_ids=decoder_input_ids, labels=labels).loss
            body, weight, bias = fused
            with _attention_kernels(input_ids.device):
                hidden = _hidden(body, input_ids, attention_mask, decoder_input_ids)
            bias = None if bias is None else bias.view(-1)
            if target_rows is None:
                # Every position, padding weighing nothing: shapes fixed by the batch's, and nothing read back
                # (what a CUDA graph replays, tasks/train/graphs.py).
                count = (labels >= 0).sum().clamp(min=1)
                return head_cross_entropy(hidden.reshape(-1, hidden.shape[-1]), weight, bias, labels.reshape(-1),
                                          ignore=True) / count
            rows, wanted = _gathered(hidden, labels, target_rows)
            # The count is known on the host when the batch says where its tokens are: no sync to learn it.
            return head_cross_entropy(rows, weight, bias, wanted) / max(target_rows.numel(), 1)

    return TokenLoss(model)
