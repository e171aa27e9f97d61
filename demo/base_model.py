"""Build the offline demo's base model: a small Marian model trained briefly on general-domain text.

No pretrained weights can be downloaded where the demo runs, so it stands in for Helsinki-NLP/opus-mt-en-de:
a joint sentencepiece vocabulary and a Marian model built from scratch, then trained with the project's
own training loop on the bundled Ding dictionary sentences (demo/data/general, GPL-2.0-or-later). It never
sees the domain data. The result is cached under .cache/demo/ and reused while the recipe is unchanged.

    python -m demo.base_model [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from tasks import scratch_model, textnorm, train, trainloop

log = logging.getLogger(__name__)

DEMO = Path(__file__).resolve().parent
GENERAL = DEMO / "data" / "general" / "ding.en-de.tsv"
CACHE = DEMO.parent / ".cache" / "demo" / "base-model"
RECIPE = {
    "size": "small",
    "validation_fraction": 0.02,
    "max_length": 64,
    "loop": trainloop.LoopSettings(learning_rate=1e-3, weight_decay=0.0, num_train_epochs=100, max_steps=160,
                                   max_tokens_per_batch=2048, warmup_steps=0.1, early_stopping_patience=0,
                                   eval_every_steps=80, checkpoint_every_steps=10**9, log_every_steps=40,
                                   precision="fp32", seed=1),
}


def fingerprint() -> str:
    """Changes whenever the recipe, the model sizes or the general-domain data change."""
    recipe = {**RECIPE, "loop": asdict(RECIPE["loop"]), "dims": asdict(scratch_model.SIZES[RECIPE["size"]])}
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
    pairs = _general_pairs()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        init = scratch_model.build([side for pair in pairs for side in pair], scratch / "init", RECIPE["size"])
        files = {"train": scratch / "train.jsonl", "validation": scratch / "validation.jsonl"}
        with files["train"].open("w", encoding="utf-8") as tr, files["validation"].open("w", encoding="utf-8") as va:
            for en, de in pairs:
                held_out = textnorm.bucket(en) < RECIPE["validation_fraction"]
                (va if held_out else tr).write(json.dumps({"translation": {"en": en, "de": de}},
                                                          ensure_ascii=False) + "\n")
        settings = train.TrainSettings("en", "de", RECIPE["max_length"], RECIPE["max_length"], RECIPE["loop"])
        building = out.with_name(out.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        report = train.fine_tune(str(init), files["train"], files["validation"], settings, output_dir=building,
                                 checkpoints=trainloop.CheckpointDir(scratch / "checkpoints"))
    (building / "demo_recipe.json").write_text(json.dumps(
        {"fingerprint": wanted, "built_from": str(GENERAL.relative_to(DEMO.parent)),
         "seconds": round(time.monotonic() - started, 1), "validation_loss": report["best_validation_loss"]},
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
