"""How well the alignment screen's margins separate true pairs from rotated ones, under two ways of pooling the
contrasts, on the pairs that reach the screen in `tests/tasks/data/test_alignment.py`'s demo tests.

For each share of rotated targets: the demo's catalog pairs are rotated as in the test and validated with the
screen off (what is left is what the screen would see); every target is scored under its own source, its 7
contrasts and one wrong pairing (and, with --reverse-model, each source under its own target and the same
neighbours' targets). Three poolings of the contrasts:

- mean: own − mean(contrasts), in nats per token (what tasks/data/alignment.py runs);
- z: (own − mean(contrasts)) / (sd(contrasts) + 0.1): the same margin in units of the contrasts' spread, so a
  target whose score barely moves with its source needs a smaller gap;
- z_every_wrong: the z margin, calibrated against every wrong pairing (each contrast and the wrong pairing in
  turn, against the other seven) instead of one: eight times the null margins for the calibration, no more
  scoring. Both ways, the two directions' null margins are summed in order, each from its own wrong pairing.

For each: the share of rotated pairs caught by the threshold that loses 5 % of the untouched pairs (chosen with
the answers known: how separable the margins are), and what the screen's own calibrated rule
(alignment.calibrated_threshold) catches and loses. One way, the "mean" rule figures are the screen's own
(the same pairs, scores and rule); both ways, the wrong pairing is read as (its own source, the neighbour's
target) instead of the screen's (the neighbour's source, its own target), so they differ slightly.

    python -m devtools.alignment_study [--reverse-model .cache/demo/reverse-model] [--shares 0.1 0.3 0.55]

The last line of stdout is one JSON object: per share, the pairs screened and rotated, and per pooling
oracle_caught, rule_caught, rule_lost, rule_rejected and rule_threshold.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from tasks import layout  # noqa: E402
from tasks.data import alignment, textnorm  # noqa: E402
from tasks.evaluate.likelihood import PairScorer  # noqa: E402
from tasks.io import storage  # noqa: E402

SPREAD_FLOOR = 0.1  # nats per token: keeps a target whose contrasts all score alike from dividing by ~0
LOSS = 0.05


def reaching_the_screen(pairs, rotated: set[int], scratch: Path, **params) -> tuple[list, list, set[int]]:
    """The pairs validation keeps with the screen off, and which of them were rotated."""
    from support.corpora import write_jsonl
    from support.runs import validate_files

    cfg, refused = validate_files(scratch / "artifacts", [write_jsonl(scratch / "catalog.jsonl", pairs)], **params)
    if refused is not None:
        raise refused
    rows = [json.loads(line) for line in storage.read_text(cfg.uri(layout.CLEAN)).splitlines()]
    return ([r["translation"]["en"] for r in rows], [r["translation"]["de"] for r in rows],
            {i for i, r in enumerate(rows) if r["line"] - 1 in rotated})


def pooled(value: float, contrasts: list[float], pooling: str) -> float:
    centre = sum(contrasts) / len(contrasts)
    if pooling == "mean":
        return value - centre
    return (value - centre) / ((sum((c - centre) ** 2 for c in contrasts) / len(contrasts)) ** 0.5 + SPREAD_FLOOR)


def margins(scores: list[list[float]], pooling: str) -> tuple[list[float], list[float]]:
    """Own and wrong-pairing margins of each pair with at least one contrast and a wrong pairing. With
    "z_every_wrong" every contrast is also a wrong pairing, against the others and the wrong pairing: k + 1 null
    margins per pair instead of one, at no extra scoring."""
    own, nulls = [], []
    for mine, *others in scores:
        own.append(pooled(mine, others[:-1], pooling))
        if pooling == "z_every_wrong":
            nulls += [pooled(wrong, others[:j] + others[j + 1:], pooling) for j, wrong in enumerate(others)]
        else:
            nulls.append(pooled(others[-1], others[:-1], pooling))
    return own, nulls


def judge(own, nulls, rotated: list[bool]) -> dict:
    true = [m for m, r in zip(own, rotated) if not r]
    wrong = [m for m, r in zip(own, rotated) if r]
    cut = alignment.quantile(true, LOSS)
    threshold = alignment.calibrated_threshold(own, nulls, alignment.estimated_share(own, nulls))
    return {"oracle_caught": round(sum(m <= cut for m in wrong) / len(wrong), 3) if wrong else None,
            "rule_caught": round(sum(m <= threshold for m in wrong) / len(wrong), 3) if wrong else None,
            "rule_lost": round(sum(m <= threshold for m in true) / len(true), 3),
            "rule_rejected": sum(m <= threshold for m in own), "rule_threshold": round(threshold, 4)}


def study(model, reverse_model, pairs, share: float, scratch: Path, **params) -> dict:
    from support.corpora import rotate_targets

    rotated_pairs, rotated = rotate_targets(pairs, share)
    sources, targets, wrong = reaching_the_screen(rotated_pairs, rotated, scratch, **params)
    near = alignment.neighbours(sources, [textnorm.source_key(s) for s in sources],
                                target_keys=[textnorm.source_key(t) for t in targets])
    kept = [i for i, picked in enumerate(near) if len(picked) >= 2]  # a contrast and the wrong pairing, as screen
    flags = [i in wrong for i in kept]

    def read(path, source_lang, target_lang, inputs, outputs):
        scorer = PairScorer(str(path), source_lang, target_lang, max_source_length=64, max_target_length=64)
        return alignment.column_scores(scorer, inputs, outputs, near, kept)

    forward = read(model, "en", "de", sources, targets)
    backward = read(reverse_model, "de", "en", targets, sources) if reverse_model else None
    found = {"screened": len(kept), "rotated": sum(flags)}
    for pooling in ("mean", "z", "z_every_wrong"):
        own, nulls = margins(forward, pooling)
        if backward:
            back, back_nulls = margins(backward, pooling)
            own, nulls = [a + b for a, b in zip(own, back)], [a + b for a, b in zip(nulls, back_nulls)]
        found[pooling] = judge(own, nulls, flags)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="en → de model (default: the demo's base model)")
    parser.add_argument("--reverse-model", type=Path, help="de → en model: score both ways")
    parser.add_argument("--shares", type=float, nargs="+", default=[0.1, 0.3, 0.55])
    parser.add_argument("--pairs", type=int, default=3000)
    args = parser.parse_args()
    from support.corpora import demo_catalog_pairs

    if args.model is None:
        from demo import base_model

        args.model = base_model.build()
    figures = {}
    with tempfile.TemporaryDirectory() as scratch:
        for share in args.shares:
            found = study(args.model, args.reverse_model, demo_catalog_pairs(args.pairs), share,
                          Path(scratch) / str(share), skip_filters=["length_ratio"])
            print(share, json.dumps(found), flush=True)
            figures[str(share)] = found
    print(json.dumps({"both_ways": bool(args.reverse_model), "shares": figures}))


if __name__ == "__main__":
    main()
