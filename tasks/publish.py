"""publish: model/ + model card + evaluation artifacts → one commit on the Hugging Face Hub.

The step re-reads gate.json itself: only a run whose stored decision is "promote" can publish, whatever the
orchestrator passed along. The Hub endpoint comes from `HF_ENDPOINT` (a private or self-hosted hub) and
the token is passed in by the caller or taken from `HF_TOKEN`; it is never logged or written anywhere.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from tasks import evaluate, gate, modelcard, storage, train, validate
from tasks.config import RunConfig

log = logging.getLogger(__name__)

PUBLISH = "publish.json"


def run(config: RunConfig, token: str | None = None, endpoint: str | None = None) -> dict:
    decision = gate.read_decision(config)
    if not decision["promote"]:
        return {"published": False, "reason": "gate refused: " + "; ".join(decision["reasons"])}
    if not config.push_to_hub:
        return {"published": False, "reason": "push_to_hub is off"}
    record_uri = config.uri(PUBLISH)
    if storage.exists(record_uri):
        log.info("already published by this run: %s", record_uri)
        return storage.read_json(record_uri)

    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None,
                token=token or os.environ.get("HF_TOKEN"))
    with tempfile.TemporaryDirectory() as scratch:
        folder = _stage(config, Path(scratch), decision)
        repo = api.create_repo(config.hub_repo_id, repo_type="model", private=config.hub_private,
                               exist_ok=True)
        commit = api.upload_folder(repo_id=config.hub_repo_id, repo_type="model", folder_path=folder,
                                   commit_message=f"Retrained model from run {config.run_id}",
                                   commit_description=f"dag_id={config.dag_id} run_id={config.run_id}")
    record = {"published": True, "repo_id": config.hub_repo_id, "repo_url": str(repo),
              "revision": commit.oid, "commit_url": commit.commit_url, "endpoint": api.endpoint}
    log.info("published %s at revision %s", config.hub_repo_id, commit.oid)
    storage.write_json(record_uri, record)
    return record


def _stage(config: RunConfig, scratch: Path, decision: dict) -> Path:
    """A folder with exactly what the commit holds: model, tokenizer, card and evaluation artifacts."""
    model_dir = storage.local_dir_for(config.uri(train.MODEL), scratch / "download")
    folder = scratch / "upload"
    shutil.copytree(model_dir, folder)
    scores = storage.read_json(config.uri(evaluate.EVAL, evaluate.SCORES))
    card = modelcard.build(config, scores=scores, gate=decision,
                           validation=storage.read_json(config.uri(validate.REPORT)),
                           training=storage.read_json(config.uri(train.MODEL, train.REPORT)))
    card.save(folder / "README.md")
    storage.download(config.uri(evaluate.EVAL, evaluate.SCORES), folder / "eval" / evaluate.SCORES)
    storage.download(config.uri(gate.GATE), folder / "eval" / gate.GATE)
    return folder
