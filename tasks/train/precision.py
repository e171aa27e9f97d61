"""Choose the numeric precision of training and decoding for the hardware at hand, and say why.

- CUDA with bf16 support (Ampere and newer, so every H100/H200): bf16 autocast. Same exponent range as
  fp32, so no loss scaling and no overflow.
- Older CUDA GPUs (V100, T4): fp16 autocast with a gradient scaler, guarded: Marian models are known to
  overflow to NaN in fp16, so after repeated non-finite losses training falls back to fp32 instead of
  diverging. These GPUs only emulate bf16 (slowly), and `torch.cuda.is_bf16_supported()` says yes to
  emulation unless asked not to: `cuda_has_native_bf16` asks.
- CPU: fp32. bf16 autocast can be requested where the CPU has native bf16 instructions (AVX512-BF16 or
  AMX) and roughly halves step time for mid-sized models, but it is not chosen automatically: small
  post-norm models trained at high learning rates collapsed under it in our tests (loss stuck, source
  ignored) where fp32 converged.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CHOICES = ("auto", "fp32", "bf16", "fp16")
MAX_CONSECUTIVE_OVERFLOWS = 10


@dataclass
class Precision:
    name: str  # fp32 | bf16 | fp16
    why: str
    overflows: int = 0

    @property
    def dtype(self):
        import torch

        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]

    @property
    def needs_scaler(self) -> bool:
        return self.name == "fp16"

    def after_overflow(self, what: str) -> "Precision":
        """Record a non-finite loss or gradient; after too many in a row in fp16 or bf16, fall back to fp32 for
        the rest of training (in fp32 there is nothing to fall back to: the training loop gives up instead)."""
        self.overflows += 1
        log.warning("non-finite %s in %s (%d in a row); batch skipped", what, self.name, self.overflows)
        if self.overflows >= MAX_CONSECUTIVE_OVERFLOWS and self.name != "fp32":
            log.warning("falling back to fp32 after %d non-finite losses in %s", self.overflows, self.name)
            return Precision("fp32", f"fallback after {self.overflows} non-finite {self.name} losses")
        return self


def cuda_has_native_bf16() -> bool:
    """bf16 in the GPU's hardware (compute capability 8.0 and newer), not emulated."""
    import torch

    return torch.cuda.is_bf16_supported(including_emulation=False)


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def choose_precision(device, requested: str = "auto", *, cuda_bf16: bool | None = None,
                     cpuinfo: str | None = None) -> Precision:
    if requested not in CHOICES:
        raise ValueError(f"precision must be one of {CHOICES}, not {requested!r}")
    if requested != "auto":
        if requested == "fp16" and device.type == "cpu":
            raise ValueError("fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        return Precision(requested, "requested in the run config")
    if device.type == "cuda":
        if cuda_bf16 is None:
            cuda_bf16 = cuda_has_native_bf16()
        if cuda_bf16:
            return Precision("bf16", "CUDA device supports bf16")
        return Precision("fp16", "CUDA device without bf16: fp16 with loss scaling and overflow fallback")
    if cpu_has_native_bf16(cpuinfo):
        return Precision("fp32", "CPU (bf16 units present: request precision=bf16 to trade stability for speed)")
    return Precision("fp32", "CPU without native bf16")


def shape_agnostic_attention(device) -> None:
    """On CUDA, leave cuDNN out of scaled-dot-product attention: PyTorch then takes its flash or memory-efficient
    kernels, which need no setup per shape. cuDNN builds an execution plan for every new batch shape, and batches
    of similar-length pairs have many shapes: on an H200 (bench/gpu.py's profile, opus-mt shape, 12,288-token
    batches) its attention calls spent 2.45 s of host time in 10 steps, 44 % of all host time, for 33 ms of GPU
    work, with the GPU busy 5 % of the wall time."""
    import torch

    if device.type == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(False)


def autocast(device, precision: Precision, cache: bool = True):
    """`cache`: keep each weight's cast for the whole region (off inside a CUDA graph capture, as PyTorch asks)."""
    import torch

    if precision.name == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=precision.dtype, cache_enabled=cache)
