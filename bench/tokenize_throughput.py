"""Tokenizing a training corpus: pairs per second, against the seed recipe's way, in one run.

The train step tokenizes its whole corpus, the carried history included, before its first step, in the pod that
holds the GPUs. Three ways over the same pairs, each side with its own limit (128 tokens):

- seed: the seed recipe's `datasets.Dataset.map(preprocess, batched=True)`, one process;
- one process: tasks/train/batching.encode as it ran before, the tokenizer called on 4,096 pairs at a time;
- project: batching.encode with the processes `encode_workers` gives this machine (its usable CPUs, at most 16,
  for a slow tokenizer and 50,000 pairs or more; `--workers N` to choose).

The default workload is the demo's: its base model's tokenizer (a MarianTokenizer, sentencepiece in Python, as
opus-mt's; pretrained once into .cache/demo, about 3 minutes on 2 cores) and its catalog pairs repeated to
`--pairs` (200,000). `--model DIR` measures another tokenizer. `--tiny` is a seconds-long smoke run on a tiny
model's tokenizer and 5,000 pairs (two pieces of work), in 2 processes, whose figures mean nothing.

The last line of stdout is one JSON object: pairs, cpus, workers, seed_pairs_per_s, one_process_pairs_per_s,
project_pairs_per_s, ratio (project ÷ seed), same_ids (all three give the same ids), and more.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from tasks import hardware  # noqa: E402

if __name__ == "__main__":
    hardware.preload_tcmalloc()  # measured with the allocator the steps run with (python -m tasks)

from tasks.train import batching  # noqa: E402

LIMIT = 128


def seed_encode(tokenizer, sources: list[str], targets: list[str]) -> batching.Encoded:
    """The seed recipe's preprocessing: a datasets map over batches of 1,000, in this process."""
    from datasets import Dataset

    def preprocess(batch):
        return tokenizer(batch["source"], text_target=batch["target"], max_length=LIMIT, truncation=True)

    mapped = Dataset.from_dict({"source": sources, "target": targets}).map(preprocess, batched=True)
    return batching.Encoded(mapped["input_ids"], mapped["labels"])


def timed(encode) -> tuple[float, batching.Encoded]:
    started = time.perf_counter()
    encoded = encode()
    return time.perf_counter() - started, encoded


def main() -> None:
    from transformers import AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="seconds-long smoke run (figures mean nothing)")
    parser.add_argument("--model", type=Path, help="model folder (default: the demo's base model)")
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--workers", type=int, help="processes for the project's path (default: encode_workers)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        if args.tiny:
            from support.corpora import digit_pairs
            from support.models import build_digits_model

            model, pairs, workers = build_digits_model(Path(scratch) / "tiny"), digit_pairs(5000, seed=3), 2
        else:
            from alignment_screen import demo_pairs
            from demo import base_model

            model, distinct = args.model or base_model.build(), demo_pairs(10**9)
            pairs = (distinct * (args.pairs // len(distinct) + 1))[:args.pairs]
            workers = None
        tokenizer = AutoTokenizer.from_pretrained(str(model))
        sources, targets = [s for s, _ in pairs], [t for _, t in pairs]
        workers = args.workers or workers or batching.encode_workers(tokenizer, len(pairs))
        seed_s, seed = timed(lambda: seed_encode(tokenizer, sources, targets))
        one_s, one = timed(lambda: batching.encode(tokenizer, sources, targets, LIMIT, LIMIT))
        project_s, project = timed(lambda: batching.encode(tokenizer, sources, targets, LIMIT, LIMIT,
                                                           workers=workers))
    figures = {
        "tokenizer": type(tokenizer).__name__, "model": str(model), "pairs": len(pairs),
        "cpus": hardware.usable_cpus(), "workers": workers, "allocator": hardware.allocator(),
        "seed_seconds": round(seed_s, 2), "one_process_seconds": round(one_s, 2),
        "project_seconds": round(project_s, 2),
        "seed_pairs_per_s": round(len(pairs) / seed_s), "one_process_pairs_per_s": round(len(pairs) / one_s),
        "project_pairs_per_s": round(len(pairs) / project_s), "ratio": round(seed_s / project_s, 2),
        "same_ids": project == one == seed, "tiny": args.tiny,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
