"""The fused training loss computes what the model's own loss computes: same value, same gradients."""

from __future__ import annotations

import pytest

from support.reads import count_reads
from tasks.train import batching, tokenloss


def _reference(hidden, weight, bias, labels):
    import torch

    logits = hidden @ weight.t() + (0 if bias is None else bias)
    return torch.nn.functional.cross_entropy(logits, labels, reduction="sum")


@pytest.mark.parametrize("chunk", [1, 7, 64])
@pytest.mark.parametrize("with_bias", [False, True])
def test_head_cross_entropy_matches_cross_entropy_and_its_gradients(chunk, with_bias):
    import torch

    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(23, 16, generator=g, dtype=torch.float64).requires_grad_()
    weight = torch.randn(50, 16, generator=g, dtype=torch.float64).requires_grad_()
    bias = torch.randn(50, generator=g, dtype=torch.float64).requires_grad_() if with_bias else None
    labels = torch.randint(0, 50, (23,), generator=g)

    fused = tokenloss.head_cross_entropy(hidden, weight, bias, labels, chunk=chunk)
    (2.5 * fused).backward()
    got = [hidden.grad.clone(), weight.grad.clone()] + ([bias.grad.clone()] if with_bias else [])
    for t in [hidden, weight] + ([bias] if with_bias else []):
        t.grad = None
    expected = _reference(hidden, weight, bias, labels)
    (2.5 * expected).backward()
    want = [hidden.grad, weight.grad] + ([bias.grad] if with_bias else [])

    assert fused.item() == pytest.approx(expected.item(), rel=1e-6)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-7)


def test_a_frozen_head_gets_no_gradient():
    import torch

    hidden = torch.randn(5, 8, requires_grad=True)
    weight = torch.randn(12, 8)
    tokenloss.head_cross_entropy(hidden, weight, None, torch.tensor([0, 3, 11, 2, 2])).backward()
    assert hidden.grad is not None and weight.grad is None


def _batch(model, lengths, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    data = batching.Encoded([torch.randint(5, vocab - 1, (n,), generator=g).tolist() + [0] for n in lengths],
                            [torch.randint(5, vocab - 1, (n + 2,), generator=g).tolist() + [0] for n in lengths])
    pad = model.config.pad_token_id
    return batching.collate(data, list(range(len(lengths))), pad, model.config.decoder_start_token_id)


def _own(batch):
    """The batch as the model's own forward takes it."""
    return {k: v for k, v in batch.items() if k != "target_rows"}


def _loss_and_grads(model, compute):
    model.zero_grad(set_to_none=True)
    loss = compute()
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", ["marian", "m2m100"])
def test_token_loss_equals_the_models_own_loss(family, tiny_model, tiny_m2m100):
    import torch
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_model if family == "marian" else tiny_m2m100)
    model.eval()  # no dropout, so both losses see the same network; gradients still flow
    if hasattr(model, "final_logits_bias"):  # a trained bias must be added too (Marian's starts at zero)
        model.final_logits_bias.normal_(0, 0.5)
    batch = _batch(model, [3, 9, 4, 15, 7])
    net = tokenloss.token_loss_module(model)
    assert tokenloss.fused_head(model) is not None

    fused_loss, fused = _loss_and_grads(model, lambda: net(**batch))
    own_loss, own = _loss_and_grads(model, lambda: model(**_own(batch)).loss)

    assert fused_loss == pytest.approx(own_loss, rel=1e-5)
    assert fused.keys() == own.keys()
    for name in own:
        torch.testing.assert_close(fused[name], own[name], rtol=1e-4, atol=1e-6, msg=name)


def test_token_loss_under_bf16_autocast_stays_close_to_the_models_own(tiny_model):
    import torch
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_model)
    model.eval()  # no dropout, so both losses see the same network; gradients still flow
    batch = _batch(model, [3, 9, 4, 15, 7, 20, 11])
    net = tokenloss.token_loss_module(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = net(**batch).item()
        own = model(**_own(batch)).loss.item()
    assert fused == pytest.approx(own, rel=2e-2)


def test_lora_wrapped_models_are_fused_and_other_families_fall_back(tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSeq2SeqLM, T5Config, T5ForConditionalGeneration

    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_model)
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    body, weight, _ = tokenloss.fused_head(lora)
    assert weight is model.lm_head.weight and body is model.model

    t5 = T5ForConditionalGeneration(T5Config(vocab_size=40, d_model=16, d_ff=32, num_layers=1, num_heads=2,
                                             d_kv=8, decoder_start_token_id=0))
    assert tokenloss.fused_head(t5) is None
    t5.eval()
    batch = _batch(t5, [3, 5])
    net = tokenloss.token_loss_module(t5)
    assert net(**batch).item() == pytest.approx(t5(**_own(batch)).loss.item(), rel=1e-5)


@pytest.mark.parametrize("pad_to", [8, 64])
def test_a_padded_head_gives_the_same_loss_and_gradients_as_the_real_vocabulary(pad_to):
    """On a GPU the vocabulary is padded inside the loss (58101 → 58112) for aligned kernels: padded words must
    take no probability and give no gradient, with or without a bias."""
    import torch

    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(19, 16, generator=g, dtype=torch.float64).requires_grad_()
    weight = torch.randn(61, 16, generator=g, dtype=torch.float64).requires_grad_()  # 61: never a multiple
    bias = torch.randn(61, generator=g, dtype=torch.float64).requires_grad_()
    labels = torch.randint(0, 61, (19,), generator=g)

    def run(pad):
        for t in (hidden, weight, bias):
            t.grad = None
        loss = tokenloss.head_cross_entropy(hidden, weight, bias, labels, chunk=7, pad_to=pad)
        loss.backward()
        return loss.item(), hidden.grad.clone(), weight.grad.clone(), bias.grad.clone()

    plain, padded = run(1), run(pad_to)
    assert padded[0] == pytest.approx(plain[0], rel=1e-12)
    assert padded[2].shape == weight.shape and padded[3].shape == bias.shape
    for a, b in zip(plain[1:], padded[1:]):
        torch.testing.assert_close(a, b)
    logp = tokenloss.head_log_probs(hidden.detach(), weight.detach(), bias.detach(), labels, chunk=5, pad_to=pad_to)
    torch.testing.assert_close(-logp.sum(), torch.tensor(plain[0], dtype=logp.dtype))


@pytest.mark.parametrize("family", ["marian", "t5"])
def test_target_log_probs_are_the_models_own(family, tiny_model):
    """Validation and pair scoring: each real target token's log-probability, as the model's own logits give
    it, through the fused head where there is one (T5 falls back to its logits)."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, T5Config, T5ForConditionalGeneration

    if family == "marian":
        model = AutoModelForSeq2SeqLM.from_pretrained(tiny_model)
        model.final_logits_bias.normal_(0, 0.5)
    else:
        model = T5ForConditionalGeneration(T5Config(vocab_size=40, d_model=16, d_ff=32, num_layers=1, num_heads=2,
                                                    d_kv=8, decoder_start_token_id=0))
    model.eval()
    batch = _batch(model, [3, 9, 4, 15, 7])
    got = tokenloss.target_log_probs(model, **batch)
    with torch.no_grad():
        logits = model(**_own(batch)).logits
    want = torch.log_softmax(logits.float(), -1).gather(2, batch["labels"].clamp(min=0)[..., None])[..., 0]
    want = want[batch["labels"] != -100]
    assert got.shape == want.shape == (int((batch["labels"] != -100).sum()),)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_padded_batch_trains_without_reading_the_device_and_with_the_models_own_loss(attention, tiny_model,
                                                                                       monkeypatch):
    """Given 2-D masks, transformers asks whether the source mask holds padding (a read of the device) in the
    encoder and again in cross-attention, and whether the decoder's all-ones mask is all ones; under SDPA the
    fused loss hands masks over in the shape SDPA takes, which are not looked into. Eager attention adds its
    mask to the scores and keeps the 2-D one."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_model, attn_implementation=attention)
    model.eval()
    batch = _batch(model, [3, 9, 4, 15, 7])
    assert not batch["attention_mask"].all()
    own = model(**_own(batch)).loss.item()
    net = tokenloss.token_loss_module(model)
    reads = count_reads(monkeypatch)
    loss = net(**batch)
    loss.backward()
    if attention == "sdpa":
        assert not reads, reads
    monkeypatch.undo()
    assert loss.item() == pytest.approx(own, rel=1e-5)
    with torch.no_grad():
        assert -tokenloss.target_log_probs(model, **batch).mean().item() == pytest.approx(own, rel=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_batch_scored_whole_gives_the_loss_and_gradients_of_its_real_tokens(precision, tiny_model, monkeypatch):
    """Without `target_rows` the loss scores every position, padding weighing nothing: no shape then depends on how
    many of the batch's tokens are real, which a CUDA graph's replays need (tasks/train/graphs.py). Same loss and
    gradients as the real tokens gathered, and nothing read back from the device."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_model)
    model.eval()  # no dropout, so both losses see the same network; gradients still flow
    batch = _batch(model, [3, 9, 4, 15, 7, 20, 11])
    assert (batch["labels"] == -100).any()
    net = tokenloss.token_loss_module(model)

    def loss_and_grads(inputs: dict):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = net(**inputs)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    gathered_loss, gathered = loss_and_grads(batch)
    reads = count_reads(monkeypatch)
    whole_loss, whole = loss_and_grads(_own(batch))
    assert not reads, reads
    monkeypatch.undo()
    assert whole_loss.item() == pytest.approx(gathered_loss.item(), rel=1e-5)
    assert whole.keys() == gathered.keys()
    rtol, atol = {"fp32": (1e-4, 1e-6), "bf16": (1e-2, 1e-4)}[precision]
    for name in gathered:
        torch.testing.assert_close(whole[name], gathered[name], rtol=rtol, atol=atol, msg=name)
