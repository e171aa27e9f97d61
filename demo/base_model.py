"""Build the offline demo's base model: an untrained small Marian model with a general-domain vocabulary.

No pretrained weights can be downloaded where the demo runs, so it stands in for Helsinki-NLP/opus-mt-en-de:
a joint sentencepiece vocabulary learned from the bundled Ding dictionary sentences (demo/data/general,
GPL-2.0-or-later) and a Marian model with freshly initialised weights. It never sees the domain data.

It is deliberately not pretrained. 160 steps of training on the Ding sentences gave a base that ignored its
source (one output for every input, BLEU 0.03 on the domain test set), and fine-tuning from it kept doing
so: the candidate wrote the same line for all 666 test sentences. The same fine-tune from untrained
weights reached BLEU 4.75 with 119 distinct outputs. The result is cached under .cache/demo/.

    python -m demo.base_model [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from tasks.train import scratch_model

log = logging.getLogger(__name__)

DEMO = Path(__file__).resolve().parent
GENERAL = DEMO / "data" / "general" / "ding.en-de.tsv"
CACHE = DEMO.parent / ".cache" / "demo" / "base-model"
RECIPE = {"size": "small", "seed": 0, "pretraining": None}


def fingerprint() -> str:
    """Changes whenever the recipe, the model sizes or the general-domain data change."""
    recipe = {**RECIPE, "dims": asdict(scratch_model.SIZES[RECIPE["size"]])}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
    digest.update(GENERAL.read_bytes())
    return digest.hexdigest()[:16]


def _general_pairs() -> list[tuple[str, str]]:
    with GENERAL.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(en, de) for en, de in rows[1:]]


def build(out: Path = CACHE) -> Path:
    """Return the cached base model, building it first if it is missing or was built by another recipe."""
    marker = out / "demo_recipe.json"
    wanted = fingerprint()
    if marker.exists() and json.loads(marker.read_text()).get("fingerprint") == wanted:
        log.info("base model cached at %s (recipe %s)", out, wanted)
        return out
    started = time.monotonic()
    building = out.with_name(out.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    scratch_model.build([side for pair in _general_pairs() for side in pair], building, RECIPE["size"],
                        seed=RECIPE["seed"])
    (building / "demo_recipe.json").write_text(json.dumps(
        {"fingerprint": wanted, "built_from": str(GENERAL.relative_to(DEMO.parent)),
         "seconds": round(time.monotonic() - started, 1), "pretraining": RECIPE["pretraining"]},
        indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    building.rename(out)
    log.info("built the demo base model in %.0fs: %s", time.monotonic() - started, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CACHE)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(build(args.out))


if __name__ == "__main__":
    main()
