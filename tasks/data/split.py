"""split: clean.jsonl → splits/{train,validation,test}.jsonl, by a hash of the normalized source.

Hashing (instead of shuffling) makes the split a pure function of the sentence: a source and all its
duplicates land in the same split, in every run and on every machine.

The first run of a pipeline freezes its test split (tasks/testset.py); later runs copy that frozen set to
splits/test.jsonl, so scores stay comparable across weeks, and their new data only feeds train and
validation: sentences whose hash falls in the test range go to train once the test set is frozen
(validation already removed those that are in the frozen set, as leakage).

With `general_eval_uri`, a general-domain test set is validated like the fresh data (same filters, same
duplicate removal) into `splits/general_test.jsonl` (layout.GENERAL_TEST), which evaluation uses to catch
catastrophic forgetting.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from tasks import layout
from tasks.config import RunConfig
from tasks.data import testset, textnorm, validate
from tasks.io import storage

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
KEY = textnorm.SOURCE_KEY


def assign(source: str, test_fraction: float, validation_fraction: float, test_frozen: bool = False) -> str:
    return assign_bucket(textnorm.bucket(source), test_fraction, validation_fraction, test_frozen)


def assign_bucket(bucket: float, test_fraction: float, validation_fraction: float, test_frozen: bool) -> str:
    if bucket < test_fraction:
        return "train" if test_frozen else "test"
    if bucket < test_fraction + validation_fraction:
        return "validation"
    return "train"


def result(config: RunConfig) -> dict | None:
    """The report of a finished split, or None when this run has not split yet."""
    return storage.read_json_or(config.uri(layout.SPLIT_REPORT))


def run(config: RunConfig) -> dict:
    if (done := result(config)) is not None:
        log.info("split already done for this run: %s", config.uri(layout.SPLIT_REPORT))
        return done

    # What validate judged unusable stays so when its failed task is marked success by hand.
    validate.fail_if_unusable(storage.read_json(config.uri(layout.VALIDATION_REPORT)), config.uri(layout.REJECTS))
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        meta = testset.metadata(config) if testset.is_frozen(config) else None
        # A set this run froze is its own first split again (an attempt that failed after freezing it): the retry
        # splits as that attempt did. Taken as an earlier run's, its sentences would go to train, unchecked (this
        # run's validation ran before any set was frozen).
        frozen = meta is not None and meta.get("frozen_by") != config.run_id
        counts = _split_clean(config, scratch, frozen)
        if frozen:
            shutil.copyfile(testset.fetch(config, scratch / layout.TEST_SET), scratch / "test.jsonl")
            counts["test"] = meta["pairs"]
            log.info("test split: the frozen set of %d pairs from run %s", meta["pairs"], meta["frozen_by"])
        else:
            if counts["test"] < config.min_test_pairs:
                raise validate.BadBatchError(
                    f"only {counts['test']} pairs hashed into the test split (test_fraction {config.test_fraction} of "
                    f"{sum(counts.values())} clean pairs), min_test_pairs = {config.min_test_pairs}: the first run "
                    f"freezes the test set for every later run, so add data or raise test_fraction. Nothing was "
                    f"frozen.")
            meta = testset.freeze(config, scratch / "test.jsonl", counts["test"])
        for name in SPLITS:
            if counts[name] == 0:
                raise validate.BadBatchError(
                    f"split {name!r} is empty ({counts}); add data or raise {name}_fraction")
            storage.upload_file(scratch / f"{name}.jsonl", config.uri(layout.split_file(name)))
        general = _general_test(config, scratch) if config.general_eval_uri else None

    report = {"counts": counts, "test_fraction": config.test_fraction,
              "validation_fraction": config.validation_fraction, "key": KEY,
              "frozen_test_set": {**meta, "reused": frozen, "uri": config.state_uri(layout.TEST_SET)},
              "general_test": general}
    log.info("split: %s%s", counts, " (test set reused)" if frozen else " (test set frozen now)")
    storage.write_json(config.uri(layout.SPLIT_REPORT), report)
    return report


def _split_clean(config: RunConfig, scratch: Path, test_frozen: bool) -> dict[str, int]:
    clean = storage.local_file_for(config.uri(layout.CLEAN), scratch / layout.CLEAN)
    names = ("train", "validation") if test_frozen else SPLITS
    held_out = testset.source_keys(config, scratch) if test_frozen else frozenset()
    counts = dict.fromkeys(SPLITS, 0)
    outs = {name: (scratch / f"{name}.jsonl").open("w", encoding="utf-8") for name in names}
    source_lang, tf, vf = config.source_lang, config.test_fraction, config.validation_fraction
    loads, leaked = json.loads, 0
    try:
        with clean.open(encoding="utf-8") as fh:
            for line in fh:
                key = textnorm.source_key(loads(line)["translation"][source_lang])
                leaked += key in held_out
                name = assign_bucket(textnorm.bucket_of(key), tf, vf, test_frozen)
                outs[name].write(line)
                counts[name] += 1
    finally:
        for fh in outs.values():
            fh.close()
    if leaked:
        raise validate.BadBatchError(
            f"{config.uri(layout.CLEAN)} holds {leaked} sentences of the frozen test set "
            f"{config.state_uri(layout.TEST_SET)}, {_why_leaked(config)}: training on them would inflate the test "
            "scores. Trigger a new run: its validation removes them as leakage.")
    return counts


def _why_leaked(config: RunConfig) -> str:
    """Why validation let test sentences through: it ran before another run froze the set, or it judged leakage by
    an earlier source key (validated before an upgrade that read punctuation as spaces, split after it)."""
    judged_by = storage.read_json(config.uri(layout.VALIDATION_REPORT)).get("source_key")
    if judged_by != KEY:
        earlier = judged_by or "a key that kept punctuation (case folding, NFKC and spacing only)"
        return f"which this run's validation, by code before an upgrade, did not find: it judged leakage by {earlier}"
    return f"which run {testset.metadata(config)['frozen_by']} froze after this run's validation"


def _general_test(config: RunConfig, scratch: Path) -> dict:
    """Validate the general-domain set like fresh data, into splits/general_test.jsonl."""
    uri = config.general_eval_uri
    folder = scratch / "general"
    if storage.is_s3(uri) and not uri.endswith("/") and storage.exists(uri):
        files = [(uri.rsplit("/", 1)[-1], storage.download(uri, folder / uri.rsplit("/", 1)[-1]))]
    elif not storage.is_s3(uri) and Path(uri).is_file():
        files = [(Path(uri).name, Path(uri))]
    else:
        files = validate.data_files(storage.local_dir_for(uri, folder))
    if not files:
        raise validate.BadBatchError(f"general_eval_uri {uri}: no files there")
    out, rejects = scratch / f"{layout.GENERAL_TEST}.jsonl", scratch / "general_rejects.jsonl"
    report = validate.screen_files(config, files, out, rejects)
    rejects_uri = config.uri(layout.GENERAL_REJECTS)
    storage.upload_file(rejects, rejects_uri)
    problems = [f"unreadable file: {m}" for m in report["unreadable_files"].values()]
    if report["kept"] < config.min_test_pairs:
        problems.append(f"only {report['kept']} usable pairs (min_test_pairs = {config.min_test_pairs})")
    if report["reject_rate"] > config.max_reject_rate:
        problems.append(f"reject rate {report['reject_rate']:.1%} > max_reject_rate {config.max_reject_rate:.1%}")
    if problems:
        raise validate.BadBatchError(f"general-domain test set {uri} is unusable: {'; '.join(problems)}. See "
                                     f"{rejects_uri}.")
    storage.upload_file(out, config.uri(layout.split_file(layout.GENERAL_TEST)))
    log.info("general-domain test set: %s", report["accounting"])
    return {"uri": uri, "pairs": report["kept"], "accounting": report["accounting"],
            "reasons": {r: info["count"] for r, info in report["reasons"].items()}, "files": report["files"]}
