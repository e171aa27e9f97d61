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
