"""Alignment-screen speed: pairs screened per second, against scoring pairs the seed recipe's way, in one run.

Both paths compute the same numbers, the target's mean log-probability per token given a source, for the same
(source, target) pairings (each pair with its own source, 7 similar-length contrasts and 1 wrong pairing):

- seed: the seed recipe's evaluation batches: 16 pairings at a time in input order, padded to the longest,
  fp32, through the model with `labels`;
- project: tasks/evaluate/likelihood.py as the screen runs it: length-sorted token-budget batches, each side
  tokenized once, bf16 on a GPU with native bf16.

The default workload is the demo's: its base model (pretrained once into .cache/demo, about 3 minutes on 2 cores)
and 3,000 of its catalog pairs. `--model DIR --data FILE.jsonl` measures another model and data, e.g. a snapshot
of Helsinki-NLP/opus-mt-en-de on a GPU. `--tiny` is a seconds-long smoke run on an untrained tiny model whose
figures mean nothing.

The last line of stdout is one JSON object: device, pairs, pairings, seed_pairs_per_s, project_pairs_per_s,
ratio (project ÷ seed), max_abs_score_difference (the two paths must agree), and more; with --reverse-model DIR
(e.g. .cache/demo/reverse-model, `python -m demo.base_model --reverse`) also dual_screen_pairs_per_s, the screen
read both ways.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from tasks import hardware  # noqa: E402

if __name__ == "__main__":
    hardware.preload_tcmalloc()  # measured with the allocator the steps run with (python -m tasks)

from tasks.data import alignment, textnorm  # noqa: E402
from tasks.evaluate.likelihood import PairScorer  # noqa: E402
from tasks.train import batching  # noqa: E402

SEED_BATCH = 16


def seed_scores(scorer: PairScorer, data: batching.Encoded, pairings: list[tuple[int, int]]) -> list[float]:
    """The seed recipe's batching: fixed 16 pairings in input order, padded to the longest, fp32."""
    import torch

    model = scorer.model.float()
    out: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(pairings), SEED_BATCH):
            chunk = pairings[start:start + SEED_BATCH]
            paired = batching.Encoded([data.sources[s] for s, _ in chunk], [data.targets[t] for _, t in chunk])
            tensors = batching.collate(paired, list(range(len(chunk))), scorer.pad_id, scorer.start_id, 1)
            tensors = {k: v.to(scorer.device) for k, v in tensors.items()}
            labels = tensors["labels"]
            logits = model(**tensors).logits
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100,
                                                    reduction="none")
            out += (-nll.sum(1) / (labels != -100).sum(1)).tolist()
    return out


def screen_pairings(sources: list[str], targets: list[str]) -> list[tuple[int, int]]:
    """The (source, target) pairings the screen scores one way: each pair, then each target under its neighbours'
    sources, found as the screen finds them."""
    near = alignment.neighbours(sources, alignment.contrast_keys(sources), target_keys=alignment.contrast_keys(targets))
    return [(i, i) for i in range(len(sources))] + [(j, i) for i, picked in enumerate(near) for j in picked]


def demo_pairs(limit: int) -> list[tuple[str, str]]:
    import random

    pairs, seen = [], set()
    for path in sorted((REPO / "demo" / "data" / "domain").glob("*.jsonl")):
        for line in path.open(encoding="utf-8"):
            pair = json.loads(line)["translation"]
            key = (textnorm.clean(pair["en"]), textnorm.clean(pair["de"]))
            if key not in seen and key[0] and key[1]:
                seen.add(key)
                pairs.append(key)
    random.Random(0).shuffle(pairs)
    return pairs[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="seconds-long smoke run (figures mean nothing)")
    parser.add_argument("--model", type=Path, help="model folder (default: the demo's base model)")
    parser.add_argument("--reverse-model", type=Path,
                        help="also time the screen both ways with this target → source model "
                             "(alignment_reverse_models)")
    parser.add_argument("--data", type=Path, help="JSONL with translation dicts (default: the demo's catalogs)")
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--source-lang", default="en")
    parser.add_argument("--target-lang", default="de")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        if args.tiny:
            from support.corpora import digit_pairs
            from support.models import build_digits_model

            model, pairs = build_digits_model(Path(scratch) / "tiny"), digit_pairs(60, seed=3)
        else:
            from demo import base_model

            model = args.model or base_model.build()
            if args.data:
                pairs = [(r["translation"][args.source_lang], r["translation"][args.target_lang])
                         for r in map(json.loads, args.data.open(encoding="utf-8"))][:args.pairs]
            else:
                pairs = demo_pairs(args.pairs)
        scorer = PairScorer(str(model), args.source_lang, args.target_lang, max_source_length=128,
                            max_target_length=128)
        sources, targets = [s for s, _ in pairs], [t for _, t in pairs]
        pairings = screen_pairings(sources, targets)

        started = time.perf_counter()
        data = scorer.encode(sources, targets)
        project = scorer.score(data, pairings)
        project_s = time.perf_counter() - started
        screened = alignment.screen(scorer, sources, targets)  # the whole screen, calibration included
        dual = None
        if args.reverse_model:
            reverse = PairScorer(str(args.reverse_model), args.target_lang, args.source_lang, max_source_length=128,
                                 max_target_length=128)
            dual = alignment.screen(scorer, sources, targets, reverse=reverse)

        started = time.perf_counter()
        seed = seed_scores(scorer, scorer.encode(sources, targets), pairings)
        seed_s = time.perf_counter() - started

    figures = {
        "device": scorer.device.type, "allocator": hardware.allocator(), "precision": scorer.precision,
        "model": str(model), "pairs": len(pairs),
        "pairings": len(pairings), "seed_seconds": round(seed_s, 2), "project_seconds": round(project_s, 2),
        "seed_pairs_per_s": round(len(pairs) / seed_s, 1), "project_pairs_per_s": round(len(pairs) / project_s, 1),
        "ratio": round(seed_s / project_s, 2),
        "screen_pairs_per_s": round(len(pairs) / screened.seconds, 1),
        "misaligned": sum(screened.misaligned(i) for i in range(len(pairs))),
        **({"dual_screen_pairs_per_s": round(len(pairs) / dual.seconds, 1),
            "dual_misaligned": sum(dual.misaligned(i) for i in range(len(pairs)))} if dual else {}),
        "max_abs_score_difference": round(max(abs(a - b) for a, b in zip(project, seed)), 5),
        "tiny": args.tiny,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
