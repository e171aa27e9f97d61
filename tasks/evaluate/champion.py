"""champion: the model currently published for `hub_repo_id` (if any), copied into the run directory.

The gate compares the candidate with the base model and with the champion, so that a run cannot publish a
model worse than the one users already have. The champion is what the run's registry serves now: on the
Hub, the head of main (a release of this workflow, recognised by its release.json, or a model uploaded there by
hand: users are served it all the same, so the candidate must measure up to it too); in a local registry,
index.json's current version (tasks/publish/registry.py). The step copies it into `champion/` and records which
release it was in `champion.json`; that pins the exact revision that was scored and lets evaluate run in a
container that has no Hub credentials. `registry_revision` is what the registry served at the lookup, release or
not: publish builds on exactly that, so it never replaces a model the gate did not compare against.

No champion (the first run, a Hub repository whose main holds no model, a release whose weights were deleted
(withdrawn) from main or from the local registry, or publishing off) is a normal outcome and is recorded with its
reason: the registry serves users no model, so there is none to compare against or to load. A Hub that refuses
the token is not: the step fails, because a gate that silently skipped the champion check could publish a
regression.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import yaml
from huggingface_hub import ModelCard

from tasks import layout
from tasks.config import RunConfig
from tasks.evaluate import scoring
from tasks.io import storage
from tasks.publish import targets
from tasks.publish.registry import RELEASE_FILE, PublishedRevision

log = logging.getLogger(__name__)


def result(config: RunConfig) -> dict | None:
    return storage.read_json_or(config.uri(layout.CHAMPION_RECORD))


def run(config: RunConfig, token: str | None = None, endpoint: str | None = None,
        source: targets.Registry | None = None) -> dict:
    if (done := result(config)) is not None:
        return done
    # The first step of the evaluation, before training: a target language whose BLEU cannot be computed here
    # (ja and ko need sacrebleu's extras) fails the run now, not after training.
    scoring.bleu(config.target_lang)
    if not config.push_to_hub:
        record = {"found": False, "reason": "push_to_hub is off: this run replaces no published model"}
    else:
        source = source or targets.open_registry(config, token=token, endpoint=endpoint)
        # Read before the champion: a release landing in between is then the champion, or publish refuses
        # to replace it; it is never replaced unseen.
        head = source.current_revision()
        current = source.latest()
        if current is None:
            reason = f"{config.hub_repo_id}@{head} serves no model (no config.json with weights at its top " \
                "level): nothing to compare against" if head else f"nothing published at {config.hub_repo_id} yet"
            record = {"found": False, "reason": reason, "registry_revision": head}
        else:
            copy_champion(source, current, config.uri(layout.CHAMPION))
            label = f"{current.repo_id}@{current.run_tag}" if current.run_tag else \
                f"{current.repo_id}@{current.revision} (not released by this pipeline)"
            record = {"found": True, "label": label, "run_tag": current.run_tag,
                      "revision": current.revision, "url": current.url, "model_uri": config.uri(layout.CHAMPION),
                      "registry_revision": current.revision, "base_model": fine_tuned_from(config.uri(layout.CHAMPION))}
    log.info("champion: %s", record.get("label") or record["reason"])
    storage.write_json(config.uri(layout.CHAMPION_RECORD), record)  # last: marks the step done
    return record


def fine_tuned_from(uri: str) -> str | None:
    """The base model the champion copied at `uri` was fine-tuned from: its release.json says so (releases since
    2026-12-07), else its card's `base_model` metadata (earlier releases with a Hub base); None when neither does
    (a model uploaded by hand, or an earlier release from a local base)."""
    release = storage.read_json_or(storage.join(uri, RELEASE_FILE)) or {}
    if release.get("base_model"):
        return release["base_model"]
    try:
        card = ModelCard(storage.read_text(storage.join(uri, "README.md")))
    except (FileNotFoundError, ValueError, yaml.YAMLError):  # no card, or metadata that is not YAML: unknown
        return None
    found = card.data.to_dict().get("base_model")
    return found if isinstance(found, str) else None


def copy_champion(source: targets.Registry, current: PublishedRevision, uri: str) -> None:
    """The files that load the champion (its top-level files), and nothing else, at `uri`. What an earlier attempt
    left there goes first: after main moved, it would mix two releases' files."""
    try:
        stale = storage.list_objects(uri, hidden=True)
    except FileNotFoundError:  # a local folder not made yet
        stale = []
    for stored in stale:
        storage.delete(stored.uri)
    with tempfile.TemporaryDirectory() as scratch:
        folder = source.download(current, Path(scratch) / "release")
        model = Path(scratch) / "model"
        model.mkdir()
        for item in folder.iterdir():
            if item.is_file() and not item.name.startswith("."):
                item.rename(model / item.name)
        storage.upload_tree(model, uri)
