from types import SimpleNamespace

import pytest

from tasks.train.precision import Precision, choose_precision, cpu_has_native_bf16, cuda_has_native_bf16

CPU, CUDA = SimpleNamespace(type="cpu"), SimpleNamespace(type="cuda")
AMD_ZEN4 = "processor: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
OLD_XEON = "processor: 0\nflags\t\t: fpu sse2 avx2 avx512f\n"


@pytest.mark.parametrize("device, requested, cuda_bf16, cpuinfo, expected", [
    (CUDA, "auto", True, "", "bf16"),  # H100/H200, A100
    (CUDA, "auto", False, "", "fp16"),  # V100, T4: fp16 with scaler and fallback
    (CPU, "auto", None, OLD_XEON, "fp32"),
    (CPU, "auto", None, AMD_ZEN4, "fp32"),  # bf16 on CPU only on request: it destabilised small models
    (CPU, "bf16", None, AMD_ZEN4, "bf16"),
    (CPU, "fp32", None, AMD_ZEN4, "fp32"),  # an explicit choice wins
    (CUDA, "fp16", True, "", "fp16"),
])
def test_precision_choice(device, requested, cuda_bf16, cpuinfo, expected):
    chosen = choose_precision(device, requested, cuda_bf16=cuda_bf16, cpuinfo=cpuinfo)
    assert chosen.name == expected and chosen.why


def test_fp16_is_refused_on_cpu():
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        choose_precision(CPU, "fp16", cpuinfo=OLD_XEON)


def test_repeated_overflows_fall_back_to_fp32_and_fp32_has_nothing_to_fall_back_to():
    p = Precision("fp16", "test")
    for _ in range(9):
        p = p.after_overflow("loss nan")
        assert p.name == "fp16"
    p = p.after_overflow("loss inf")
    assert p.name == "fp32" and not p.needs_scaler and "fallback" in p.why
    for count in range(1, 30):  # the counter keeps climbing: the training loop gives up at its limit
        p = p.after_overflow("loss nan")
        assert p.name == "fp32" and p.overflows == count


def test_cpu_flag_detection():
    assert cpu_has_native_bf16(AMD_ZEN4) and not cpu_has_native_bf16(OLD_XEON)
    assert cpu_has_native_bf16("flags: amx_bf16 amx_tile")


@pytest.mark.parametrize("gpu, native", [("V100 or T4: bf16 only by emulation", False), ("A100, H100, H200", True)])
def test_a_gpu_that_only_emulates_bf16_takes_the_fp16_path(monkeypatch, gpu, native):
    import torch

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return native or including_emulation  # torch's answer on these GPUs

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert cuda_has_native_bf16() is native
    assert choose_precision(CUDA, "auto").name == ("bf16" if native else "fp16")


def _fp16_batch(model):
    """One training batch through the loop's own forward/backward, in fp16 autocast (simulated on CPU)."""
    from tasks.train import batching

    from tasks.train import feed

    data = batching.Encoded([[5, 6, 7, 0]] * 2, [[8, 9, 0]] * 2)
    return feed.prepare(data, [0, 1], 0, model.config.pad_token_id, model.config.decoder_start_token_id, 1)


def _weights(model):
    return [p.detach().clone() for p in model.parameters()]


def test_fp16_loss_scaling_skips_a_step_whose_gradients_overflow_and_lowers_the_scale(tiny_model):
    import torch
    from transformers import AutoModelForSeq2SeqLM

    from tasks.train import passes, tokenloss

    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_model)
    net, cpu, fp16 = tokenloss.token_loss_module(model), torch.device("cpu"), Precision("fp16", "simulated")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    pieces = _fp16_batch(model)

    def step(scaler):
        loss = passes.forward_backward(net, pieces, cpu, fp16, scaler, 1)
        scaler.unscale_(optimizer)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return loss

    # A finite loss whose scaled gradients overflow: the step is skipped and the scale halves.
    huge = torch.amp.GradScaler("cpu", init_scale=2.0 ** 127, enabled=fp16.needs_scaler)
    before = _weights(model)
    assert torch.isfinite(step(huge))
    assert all(torch.equal(a, b) for a, b in zip(before, _weights(model)))
    assert huge.get_scale() == 2.0 ** 126
    # With room in the scale the same batch updates the weights and the scale stays.
    fitting = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16, enabled=fp16.needs_scaler)
    assert torch.isfinite(step(fitting))
    assert not all(torch.equal(a, b) for a, b in zip(before, _weights(model)))
    assert fitting.get_scale() == 2.0 ** 16


def test_activations_that_overflow_fp16_end_in_fp32_not_in_nan(tiny_model):
    """Marian's feed-forward outputs can exceed fp16's 65504: the loss is NaN in fp16 but finite in fp32, so
    after MAX_CONSECUTIVE_OVERFLOWS such batches training goes on in fp32."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    from tasks.train import passes, tokenloss
    from tasks.train.precision import MAX_CONSECUTIVE_OVERFLOWS

    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_model)
    with torch.no_grad():
        for layer in model.model.encoder.layers:
            layer.fc1.weight.mul_(1e3)
            layer.fc2.weight.mul_(1e3)
    net, cpu = tokenloss.token_loss_module(model), torch.device("cpu")
    pieces = _fp16_batch(model)
    precision = Precision("fp16", "simulated")
    for _ in range(MAX_CONSECUTIVE_OVERFLOWS):
        scaler = torch.amp.GradScaler("cpu", enabled=precision.needs_scaler)
        loss = passes.forward_backward(net, pieces, cpu, precision, scaler, 1)
        assert not torch.isfinite(loss)
        model.zero_grad(set_to_none=True)
        precision = precision.after_overflow(f"loss {loss.item()}")
    assert precision.name == "fp32" and not precision.needs_scaler
    scaler = torch.amp.GradScaler("cpu", enabled=precision.needs_scaler)
    assert torch.isfinite(passes.forward_backward(net, pieces, cpu, precision, scaler, 1))


def test_attention_leaves_cudnn_out_on_cuda_only():
    """cuDNN's attention plans each new batch shape on the host (bench/gpu.py's profile): CUDA steps skip it."""
    import torch

    from tasks.train.precision import shape_agnostic_attention

    before = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        torch.backends.cuda.enable_cudnn_sdp(True)
        shape_agnostic_attention(torch.device("cpu"))
        assert torch.backends.cuda.cudnn_sdp_enabled()
        shape_agnostic_attention(torch.device("cuda"))
        assert not torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)
