"""The frozen test set: made once by a pipeline's first run, then reused so scores compare across weeks.

It lives in the pipeline's state area (`RunConfig.state_dir`), not in a run directory: `test_set.jsonl`
holds the pairs, and `test_set.json` their SHA-256, count and the run that froze them. The metadata file is
written last, so its presence means the set is complete. A later run copies the pairs to its own
splits/test.jsonl after checking the hash, and validation removes from training every pair whose source is
in it (leakage), or in the general-domain test set (`general_eval_uri`), whose forgetting check would otherwise be
measured on sentences the candidate learned (`held_out_keys`).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

from tasks import layout
from tasks.config import RunConfig
from tasks.data import replay, textnorm
from tasks.io import digest, storage

log = logging.getLogger(__name__)

FROZEN_TEST_SET = "the frozen test set"
GENERAL_TEST_SET = "the general-domain test set (general_eval_uri)"


class FrozenTestSetError(RuntimeError):
    """The stored test set does not match its recorded hash."""


def is_frozen(config: RunConfig) -> bool:
    return storage.exists(config.state_uri(layout.TEST_SET_META))


def metadata(config: RunConfig) -> dict:
    return storage.read_json(config.state_uri(layout.TEST_SET_META))


def fetch(config: RunConfig, local: Path) -> Path:
    """The frozen pairs as a local file, after checking them against the recorded hash."""
    meta = metadata(config)
    storage.download(config.state_uri(layout.TEST_SET), local)
    found = digest.of_file(local)
    if found != meta["sha256"]:
        raise FrozenTestSetError(f"{config.state_uri(layout.TEST_SET)} has SHA-256 {found}, but "
                                 f"{config.state_uri(layout.TEST_SET_META)} recorded {meta['sha256']} when run "
                                 f"{meta['frozen_by']} froze it; restore it or delete both files to freeze a new "
                                 f"test set (scores will not compare)")
    return local


def source_keys(config: RunConfig, scratch: Path) -> frozenset[int]:
    """Keys of the frozen test set's sources (empty before the first run has frozen one)."""
    if not is_frozen(config):
        return frozenset()
    with fetch(config, scratch / layout.TEST_SET).open(encoding="utf-8") as fh:
        return frozenset(textnorm.source_key(json.loads(line)["translation"][config.source_lang])
                         for line in fh)


def held_out_keys(config: RunConfig, scratch: Path) -> dict[int, str]:
    """Keys of the sources training must never see, each with the test set that holds it: the frozen test set's
    (none before the first run has frozen one), and the general-domain test set's, read as it is (before split
    screens it: every sentence it may keep)."""
    keys = dict.fromkeys(source_keys(config, scratch), FROZEN_TEST_SET)
    if config.general_eval_uri:
        for source, _ in replay.read_parallel(config.general_eval_uri, config.source_lang, config.target_lang):
            keys.setdefault(textnorm.source_key(source), GENERAL_TEST_SET)
    return keys


def freeze(config: RunConfig, pairs: Path, count: int) -> dict:
    meta = {"pairs": count, "sha256": digest.of_file(pairs), "frozen_by": config.run_id,
            "frozen_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "languages": [config.source_lang, config.target_lang], "data_uri": config.data_uri}
    storage.upload_file(pairs, config.state_uri(layout.TEST_SET))
    storage.write_json(config.state_uri(layout.TEST_SET_META), meta)
    log.info("froze the test set: %d pairs in %s", count, config.state_uri(layout.TEST_SET))
    return meta
