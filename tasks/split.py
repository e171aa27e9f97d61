"""split: clean.jsonl → splits/{train,validation,test}.jsonl, by a hash of the normalized source.

Hashing (instead of shuffling) makes the split a pure function of the sentence: the same source always
lands in the same split, in every run and on every machine, so a sentence seen in training never leaks
into the test set through a later batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path

from tasks import storage, validate
from tasks.config import RunConfig

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
REPORT = "split_report.json"


def split_uri(config: RunConfig, name: str) -> str:
    return config.uri("splits", f"{name}.jsonl")


def bucket(source: str) -> float:
    """A stable number in [0, 1) for a source sentence, independent of case and spacing."""
    digest = hashlib.blake2b(validate.normalize(source).lower().encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign(source: str, test_fraction: float, validation_fraction: float) -> str:
    b = bucket(source)
    if b < test_fraction:
        return "test"
    if b < test_fraction + validation_fraction:
        return "validation"
    return "train"


def run(config: RunConfig) -> dict:
    report_uri = config.uri(REPORT)
    if storage.exists(report_uri):
        log.info("split already done for this run: %s", report_uri)
        return storage.read_json(report_uri)

    counts = dict.fromkeys(SPLITS, 0)
    with tempfile.TemporaryDirectory() as scratch:
        clean = storage.download(config.uri(validate.CLEAN), Path(scratch) / validate.CLEAN) \
            if storage.is_s3(config.run_dir) else Path(config.uri(validate.CLEAN))
        outs = {name: (Path(scratch) / f"{name}.jsonl").open("w", encoding="utf-8") for name in SPLITS}
        try:
            with clean.open(encoding="utf-8") as fh:
                for line in fh:
                    record = json.loads(line)
                    name = assign(record["translation"][config.source_lang], config.test_fraction,
                                  config.validation_fraction)
                    outs[name].write(line)
                    counts[name] += 1
        finally:
            for fh in outs.values():
                fh.close()
        for name in SPLITS:
            if counts[name] == 0:
                raise validate.BadBatchError(
                    f"split {name!r} is empty ({counts}); add data or raise {name}_fraction")
            storage.upload_file(Path(scratch) / f"{name}.jsonl", split_uri(config, name))
    report = {"counts": counts, "test_fraction": config.test_fraction,
              "validation_fraction": config.validation_fraction, "key": "blake2b(normalized lower-cased source)"}
    log.info("split: %s", counts)
    storage.write_json(report_uri, report)
    return report
