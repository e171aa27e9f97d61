"""Counting reads of tensor values: on a GPU each one waits for every kernel queued before it."""

from __future__ import annotations

import collections
import traceback
from pathlib import Path

# Asked on CPU only (is a bias all zeros, so its addition can be skipped); on a GPU the fused head never asks.
CPU_ONLY = ("_padded_head",)


def count_reads(monkeypatch) -> collections.Counter:
    """From now on, every item/bool/tolist/float/int of a tensor, from any code, counted by "how file:function"."""
    import torch

    reads: collections.Counter = collections.Counter()
    for name in ("item", "__bool__", "tolist", "__float__", "__int__"):
        real = getattr(torch.Tensor, name)

        def counting(self, *args, _real=real, _name=name, **kwargs):
            caller = traceback.extract_stack(limit=2)[0]
            if caller.name not in CPU_ONLY:
                reads[f"{_name} {Path(caller.filename).name}:{caller.name}"] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return reads
