"""What the machine offers to a step: how many CPUs it may use, and which device trains and decodes.

Containers and CPU pinning give a process fewer CPUs than the machine has, so the count comes from the
process's affinity mask where the OS has one (Linux), not from `os.cpu_count()`.
"""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
