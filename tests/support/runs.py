"""Run directories for step tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from support.corpora import write_jsonl
from tasks import config, split, storage

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_run(root: Path | str, run_id: str = "run-1", **params) -> config.RunConfig:
    cfg = config.build(params, dag_id="test_dag", run_id=run_id, artifact_root=str(root))
    config.save(cfg)
    return cfg


def write_splits(cfg: config.RunConfig, scratch: Path, **splits) -> None:
    """Place ready-made splits (name → list of pairs) in the run directory, as the split step would."""
    for name, pairs in splits.items():
        path = write_jsonl(scratch / f"{name}.jsonl", pairs, cfg.source_lang, cfg.target_lang)
        storage.upload_file(path, split.split_uri(cfg, name))


def cli_env() -> dict:
    """Environment for `python -m tasks ...` subprocesses: the repo importable, the offline Hub settings."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def cli(step: str, run_dir: str) -> list[str]:
    return [sys.executable, "-m", "tasks", step, "--run-dir", run_dir]


def put_raw(cfg: config.RunConfig, *paths: Path) -> None:
    """Place files in the run's raw/ folder, as the pull step would."""
    from tasks import pull

    for path in paths:
        storage.upload_file(path, cfg.uri(pull.RAW, path.name))


def accounted(cfg: config.RunConfig) -> tuple[dict, list[dict], list[dict]]:
    """The validation report, clean records and rejects, after checking that every row read is in exactly
    one of them: rows in = kept + rejected + deduplicated, per file and in total."""
    import json
    from collections import Counter

    from tasks import validate

    report = storage.read_json(cfg.uri(validate.REPORT))
    clean = [json.loads(line) for line in storage.read_text(cfg.uri(validate.CLEAN)).splitlines()]
    rejects = [json.loads(line) for line in storage.read_text(cfg.uri(validate.REJECTS)).splitlines()]
    assert report["rows_in"] == report["kept"] + report["rejected"] + report["deduplicated"], report["accounting"]
    assert len(clean) == report["kept"]
    assert len(rejects) == report["rejected"] + report["deduplicated"]
    per_file = Counter(r["file"] for r in clean + rejects)
    assert per_file == Counter({name: c["rows"] for name, c in report["files"].items() if c["rows"]})
    for name, c in report["files"].items():
        assert c["rows"] == c["kept"] + c["rejected"] + c["deduplicated"], name
    assert all(r["reasons"] and all(x["reason"] and x["detail"] for x in r["reasons"]) for r in rejects)
    return report, clean, rejects
