from types import SimpleNamespace

import pytest

from tasks.train.precision import Precision, choose_precision, cpu_has_native_bf16

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
