"""How many operations a training step issues, and what they cost the host: the work CUDA graphs take off a GPU's
host (tasks/train/graphs.py).

The train bench's model layout (bench/train_throughput.py: opus-mt's 6+6 layers and 8 heads) at widths so small
that its arithmetic costs next to nothing (d_model 64, vocabulary 1,000), trained by the project's loop on one CPU
thread with 512-token batches: a step's wall time is then mostly host work, the kind a GPU's host does for each
step too. Every operation that reaches PyTorch's dispatcher (forward, backward, autocast's casts, clipping, the
optimizer) is counted by name, per step.

    python -m devtools.step_ops [--precision bf16|fp32] [--steps N]

The last line of stdout is one JSON object: ops_per_step, ms_per_step and the most frequent operations. Under
bf16 (the GPU's precision) a step issued 4,070 operations, 719 of them autocast's casts (2026-12-06).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import train_throughput as bench  # noqa: E402

from tasks.train import batching  # noqa: E402
from tasks.train import loop as trainloop  # noqa: E402

DIMS = {"vocab_size": 1000, "d_model": 64, "layers": 6, "heads": 8, "ffn_dim": 128}


def _steps(n: int, data: batching.Encoded, precision: str) -> None:
    import torch

    settings = trainloop.LoopSettings(learning_rate=0, weight_decay=0.01, num_train_epochs=100,
                                      max_tokens_per_batch=512,
                                      max_steps=n, early_stopping_patience=0, eval_every_steps=10**9,
                                      checkpoint_every_steps=10**9, log_every_steps=10**9, precision=precision)
    pad = DIMS["vocab_size"] - 1
    with tempfile.TemporaryDirectory() as scratch:
        trainloop.train(bench.build_model(DIMS), data, batching.Encoded(data.sources[:8], data.targets[:8]), settings,
                        pad_id=pad, decoder_start_id=pad, checkpoints=trainloop.CheckpointDir(Path(scratch)),
                        device=torch.device("cpu"))


def count(steps: int, precision: str) -> dict:
    """Operations per step (the difference between runs of 2·`steps` and `steps` steps, so set-up and the final
    validation cancel out) and wall milliseconds per step, measured the same way without counting."""
    if steps < 1:  # 0 would lift the loop's step cap: 100 epochs of training, then a division by zero
        raise ValueError(f"steps must be a whole number >= 1, not {steps!r}")
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops: collections.Counter = collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    torch.set_num_threads(1)
    data = bench.synthetic_pairs(2000, DIMS["vocab_size"], seed=1)
    _steps(2, data, precision)  # warm-up
    seconds, ops = {}, {}
    for n in (steps, 2 * steps):
        started = time.perf_counter()
        _steps(n, data, precision)
        seconds[n] = time.perf_counter() - started
        with Counter() as counter:
            _steps(n, data, precision)
        ops[n] = counter.ops
    per_step = {name: (ops[2 * steps][name] - ops[steps][name]) / steps for name in ops[2 * steps]}
    top = sorted(per_step.items(), key=lambda item: -item[1])[:15]
    return {"precision": precision, "steps": steps, "ops_per_step": round(sum(per_step.values())),
            "ms_per_step": round(1000 * (seconds[2 * steps] - seconds[steps]) / steps, 2),
            "top": {name: round(n, 1) for name, n in top}}


def _positive(text: str) -> int:
    if not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"a whole number >= 1, not {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    parser.add_argument("--steps", type=_positive, default=20, help="steps per measured run (default 20)")
    args = parser.parse_args(argv)
    print(json.dumps(count(args.steps, args.precision)))


if __name__ == "__main__":
    main()
