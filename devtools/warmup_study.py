"""Does a post-norm model trained from scratch learn to use its source, or stop at the loss of a model blind to it?

The train bench's synthetic pairs and model (bench/train_throughput.py: opus-mt's post-norm Marian layout, swish,
scaled embeddings) at a size 2 CPU cores train in minutes, trained by the project's loop under several (peak
learning rate, warmup) pairs on the same data; for each, the held-out loss every quarter epoch and the best one,
read against the source-blind (unigram) loss. On the H200 the bench's runs stopped at that loss; this is the
CPU-sized reproduction behind the automatic warmup (tasks/train/automatic.auto_warmup, README "On a GPU"):

    python -m devtools.warmup_study   # the README's table: nine runs, about 8 minutes each on 2 CPU cores

A run is RATE:WARMUP, the warmup a share of the steps (below 1), a number of steps, or `auto` (the loop's
default, following the rate). `--seeds 0,1,2` repeats each run from other initial weights and batch orders
(seed k: weights from seed k, the loop's seed 42 + k; seed 0 is the table's), keyed RATE:WARMUP/sK past seed 0.
fp32 on CPU. The last line of stdout is one JSON object: the source-blind loss, and per run its best loss,
warmup steps, scheduled steps and validation curve ([step, loss]).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import train_throughput as bench  # noqa: E402

from tasks.train import loop as trainloop  # noqa: E402

RUNS = ",".join(["4.9e-4:0.05", "4.9e-4:0.245", "4.9e-4:0.25", "4.9e-4:0.35", "4.9e-4:auto", "4.9e-4:0.5",
                 "2.8e-4:0.14", "2.8e-4:0.05", "1e-4:0.05"])  # the README's table
DIMS = {"vocab_size": 8000, "d_model": 256, "layers": 6, "heads": 4, "ffn_dim": 1024}


def one_run(dims: dict, train, heldout, rate: float, warmup: float | None, tokens: int, epochs: float,
            seed: int = 0) -> dict:
    """The bench's project run (run config defaults, a validation every quarter epoch) at this rate and warmup."""
    import torch

    overrides = {"learning_rate": rate, "warmup_steps": warmup, "seed": trainloop.LoopSettings.seed + seed}
    seconds, _, report = bench.run_project(dims, train, torch.device("cpu"), "fp32", tokens, epochs=epochs,
                                           validation=heldout, overrides=overrides, model_seed=seed)
    return {"best": report["best_validation_loss"], "best_step": report["best_step"],
            "warmup_steps": report["warmup_steps"], "scheduled_steps": report["scheduled_steps"],
            "seconds": round(seconds, 1), "validations": report["validations"]}


def study(dims: dict, runs: str, pairs: int, tokens: int, epochs: float, seeds: str = "0") -> dict:
    train = bench.synthetic_pairs(pairs, dims["vocab_size"], seed=1)
    heldout = bench.synthetic_pairs(max(16, pairs // 10), dims["vocab_size"], seed=2)
    found = {"dims": dims, "pairs": pairs, "tokens_per_batch": tokens, "epochs": epochs,
             "unigram_loss": round(bench.unigram_loss(train, heldout, dims["vocab_size"]), 4), "runs": {}}
    for seed in (int(s) for s in seeds.split(",")):
        for run in runs.split(","):
            rate, warmup = run.split(":")
            key = run if seed == 0 else f"{run}/s{seed}"
            found["runs"][key] = one_run(dims, train, heldout, float(rate),
                                         None if warmup == "auto" else float(warmup), tokens, epochs, seed)
            print(key, json.dumps({k: v for k, v in found["runs"][key].items() if k != "validations"}), flush=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=RUNS, help=f"comma-separated RATE:WARMUP (default {RUNS})")
    for name, value in DIMS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=value)
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--tokens", type=int, default=1024, help="tokens per batch")
    parser.add_argument("--epochs", type=float, default=5)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, each repeating every run (default 0)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    dims = {name: getattr(args, name) for name in DIMS}
    print(json.dumps(study(dims, args.runs, args.pairs, args.tokens, args.epochs, args.seeds)))


if __name__ == "__main__":
    main()
