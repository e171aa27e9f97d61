"""Throughput of the real validate and split steps on a million pairs (the goal: ≤ 60 s on 2 cores, ≤ ~2 GB).

    python bench/validate_throughput.py              # generate 1,000,000 pairs, validate and split them
    python bench/validate_throughput.py --tiny       # 2,000 pairs: a seconds-long smoke test (CI)
    python bench/validate_throughput.py --input data.jsonl   # your own JSONL instead

Generated pairs join two real human-translated pairs from the bundled demo corpora (dictionary sentences
and GNU messages), so lengths, languages, placeholders and numbers look like real data, and nearly every
pair is distinct. A few percent are made bad on purpose (duplicates, swapped languages, empty or absurd
sides), so every kind of outcome is exercised. Only validate + split are timed, not the generation.

The last line of stdout is one JSON object: pairs, seconds (wall clock), pairs_per_s, peak_mib (main process
plus each worker process at its own peak: an upper bound of what the step held at once), cpu_seconds and
the 1-minute load average (on a busy machine wall time stretches, CPU time does not), and the counts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEMO = REPO / "demo" / "data"


def real_pairs() -> list[tuple[str, str]]:
    pairs = []
    with (DEMO / "general" / "ding.en-de.tsv").open(encoding="utf-8") as fh:
        next(fh)
        pairs += [tuple(line.rstrip("\n").split("\t")[:2]) for line in fh]
    for path in sorted((DEMO / "domain").glob("*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            pairs += [(r["translation"]["en"], r["translation"]["de"]) for r in map(json.loads, fh)]
    return [(s, t) for s, t in pairs if s and t and len(s) < 120 and len(t) < 140]


def generate(path: Path, count: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    pool = real_pairs()
    made: list[tuple[str, str]] = []
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            (s1, t1), (s2, t2) = rng.choice(pool), rng.choice(pool)
            source, target = f"{s1} {s2}", f"{t1} {t2}"
            roll = rng.random()
            if roll < 0.03 and made:  # an exact or re-spaced duplicate of an earlier pair
                source, target = rng.choice(made)
                source = source if roll < 0.02 else source.upper()
            elif roll < 0.04:
                source, target = target, source  # languages swapped
            elif roll < 0.045:
                target = ""
            elif roll < 0.05:
                target = target + " " + " ".join([t1] * 8)
            if i % 97 == 0:
                made.append((source, target))
            out.write(json.dumps({"translation": {"en": source, "de": target}}, ensure_ascii=False) + "\n")


def cpu_seconds() -> tuple[float, float]:
    """CPU time of this process, and of its finished children (the screening workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def peak_mib() -> tuple[float, float]:
    """Peak resident memory of this process and of the largest finished child, in MiB (Linux: KiB units)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, child


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000, help="pairs to generate")
    parser.add_argument("--tiny", action="store_true", help="2,000 pairs: a smoke test")
    parser.add_argument("--input", type=Path, help="a JSONL file of translation pairs to use instead")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from tasks import config, hardware, layout, locations
    from tasks.data import pull, split, validate
    from tasks.io import storage

    pairs = 2_000 if args.tiny else args.pairs
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        root = Path(tmp)
        os.environ[locations.ROOTS_ENV] = str(root)  # the bench's data folder is a temporary one
        incoming = root / "incoming"
        incoming.mkdir()
        if args.input:
            shutil.copyfile(args.input, incoming / args.input.name)
        else:
            generate(incoming / "pairs.jsonl", pairs)
        cfg = config.build({"data_uri": str(incoming), "min_clean_pairs": 1, "min_test_pairs": 1,
                            "alignment_screen": False},  # surface validation only: bench/alignment_screen.py
                           dag_id="bench", run_id="bench", artifact_root=str(root / "artifacts"))
        config.save(cfg)
        pull.run(cfg)  # not timed: copying the file into the run is not validation
        started, cpu_before = time.perf_counter(), cpu_seconds()
        summary = validate.run(cfg)
        split_report = split.run(cfg)
        seconds, cpu_after = time.perf_counter() - started, cpu_seconds()
        main_cpu, worker_cpu = (after - before for after, before in zip(cpu_after, cpu_before))
        report = storage.read_json(cfg.uri(layout.VALIDATION_REPORT))
    own, child = peak_mib()
    workers = report["workers"]
    result = {
        "pairs": report["rows_in"], "seconds": round(seconds, 2),
        "pairs_per_s": round(report["rows_in"] / seconds), "peak_mib": round(own + child * (workers > 1) * workers),
        "main_peak_mib": round(own), "worker_peak_mib": round(child), "workers": workers,
        "cpus": hardware.usable_cpus(), "cpu_seconds": round(main_cpu + worker_cpu, 1),
        "main_cpu_seconds": round(main_cpu, 1),
        # Other processes competing for the same cores stretch `seconds` but not `cpu_seconds`.
        "load_average": round(os.getloadavg()[0], 2), **summary, "splits": split_report["counts"],
        "reasons": {r: info["count"] for r, info in report["reasons"].items()},
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
