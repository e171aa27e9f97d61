"""What the machine offers to a step: how many CPUs it may use, and which memory allocator serves it.

Containers and CPU pinning give a process fewer CPUs than the machine has, so the count comes from the
process's affinity mask where the OS has one (Linux), not from `os.cpu_count()`.

`python -m tasks` starts itself over with tcmalloc preloaded where tcmalloc is installed (Debian and Ubuntu:
`apt-get install libtcmalloc-minimal4`; both images have it). glibc's malloc gives every freed block above
32 MiB back to the kernel, so each vocabulary-sized tensor a training step allocates (opus-mt: 58,101 × 512,
119 MB in fp32: the head's weight in the matmul precision, its gradient, the embeddings' gradients, the loss's
chunk buffers) comes back as fresh pages that the kernel zeroes on first touch; tcmalloc keeps freed memory
for reuse. On 2 CPU cores the train bench's epoch took 37.9 s with glibc's malloc and 30.6 s with tcmalloc,
the seed recipe's 166.9 s and 124.8 s (README, "The memory allocator"). A deployment that sets LD_PRELOAD
itself (to jemalloc, or empty to keep glibc's malloc) is left as it is.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import platform
import sys
from pathlib import Path
from typing import Mapping

# Where Debian and Ubuntu (libtcmalloc-minimal4) and Red Hat (gperftools-libs) install tcmalloc.
TCMALLOC = ("/usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4", "/usr/lib64/libtcmalloc_minimal.so.4")
# tcmalloc reports every allocation above 1 GiB on stderr, and a large model's weights are such allocations.
TCMALLOC_QUIET = {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(2**40)}
ALLOCATORS = ("tcmalloc", "jemalloc", "mimalloc")
# Where a container's CPU limit is (cgroup v2, then v1).
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, and no more than its container's CPU limit (a pod's
    `limits.cpu` is a cgroup quota, which the affinity mask does not show)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota()
    return cpus if quota is None else max(1, min(cpus, math.ceil(quota)))


def cpu_quota() -> float | None:
    """The CPUs' worth of time the cgroup allows this process (cgroup v2 `cpu.max`, else v1's CFS quota), or None
    where there is no limit or no cgroup to read."""
    with contextlib.suppress(OSError, ValueError, IndexError, ZeroDivisionError):
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    with contextlib.suppress(OSError, ValueError, ZeroDivisionError):
        quota = int(CGROUP_V1_QUOTA.read_text())
        return None if quota <= 0 else quota / int(CGROUP_V1_PERIOD.read_text())
    return None


# CPU features whose kernels round differently (a product in AVX-512 or AMX is not summed as in AVX2).
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def processor(device: str) -> dict:
    """What a computation on `device` ("cpu" or "cuda") runs on, as far as its numbers depend on it: the GPU's
    model, compute capability and CUDA libraries, or the CPU's model, features and the CPUs this process may use."""
    if device == "cuda":
        try:
            import torch

            major, minor = torch.cuda.get_device_capability()
            return {"gpu": torch.cuda.get_device_name(), "capability": f"{major}.{minor}",
                    "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
        except Exception as err:  # noqa: BLE001 - an engine may reach a GPU that torch cannot
            return {"gpu": f"unknown ({type(err).__name__})"}
    model, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    return {"cpu": model, "features": [f for f in CPU_FEATURES if f in flags], "cpus": usable_cpus()}


def tcmalloc_env(env: Mapping[str, str], patterns: tuple[str, ...] = TCMALLOC,
                 platform: str = sys.platform) -> dict[str, str] | None:
    """`env` with tcmalloc preloaded, or None to run with the environment as it is: off Linux, where tcmalloc
    is not installed, or where LD_PRELOAD is set already (by the deployment, or by an earlier start)."""
    if not platform.startswith("linux") or "LD_PRELOAD" in env:
        return None
    found = sorted(path for pattern in patterns for path in glob.glob(pattern))
    return {**env, "LD_PRELOAD": found[0], **TCMALLOC_QUIET} if found else None


def preload_tcmalloc() -> None:
    """Start this same command over (same interpreter, options and arguments) with tcmalloc preloaded, where
    `tcmalloc_env` says so; else return. Call it before anything heavy is imported: the work done so far is
    done again."""
    env = tcmalloc_env(os.environ)
    if env is not None:
        os.execve(sys.executable, sys.orig_argv, env)


def allocator() -> str:
    """The memory allocator this process really runs with: a preloaded one found among its mapped libraries, else
    the C library's malloc."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            mapped = maps.read()
    except OSError:
        mapped = ""
    return next((name for name in ALLOCATORS if f"lib{name}" in mapped), "malloc")
