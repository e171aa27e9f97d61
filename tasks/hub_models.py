"""Hub models pinned for a run: every step of a run loads the same commit of each Hub model it names.

A run loads its base model (and a reverse model for the alignment screen) in several steps, each in its own pod, over
hours: validate screens with it, train fine-tunes it, evaluate scores it as the base, each learning-curve point
starts from it. Loaded by name, each would take whatever the Hub holds at that moment, so a model updated on the
Hub while a run is under way would make train fine-tune one model and evaluate compare the candidate with another.

So the first step that loads a Hub model resolves the commit its main branch points to and records it, with the
files a seq2seq model is loaded from, in the run directory's hub_revisions.json; every later step, retry and
learning-curve point (`carry_over`) downloads that commit. The record says which commit the run trained from and
compared against (report.md shows it). A local model folder is loaded as it is.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import datetime, timezone
from pathlib import Path

from huggingface_hub import HfApi, constants, snapshot_download

from tasks import layout, locations
from tasks.config import RunConfig
from tasks.io import storage

log = logging.getLogger(__name__)

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# What from_pretrained reads of a seq2seq model: its configs, tokenizer files and one copy of its weights
# (opus-mt repositories also hold TensorFlow, Flax and Rust copies, several times the size).
_SIDE_FILES = (".json", ".spm", ".model", ".txt")


def model_files(files: list[str]) -> list[str]:
    """The files of a Hub model repository that loading it needs: configs, tokenizer files and the safetensors
    weights, or the PyTorch .bin weights where there are none."""
    top = [f for f in files if "/" not in f]
    weights = [f for f in top if f.endswith(".safetensors")] or \
        [f for f in top if f.startswith("pytorch_model") and f.endswith((".bin", ".bin.index.json"))]
    return sorted({*(f for f in top if f.endswith(_SIDE_FILES)), *weights})


def _valid(pin) -> bool:
    return isinstance(pin, dict) and isinstance(pin.get("revision"), str) and bool(_COMMIT.match(pin["revision"])) \
        and isinstance(pin.get("files"), list) and bool(pin["files"]) \
        and all(isinstance(f, str) and f and "/" not in f and "\\" not in f and f not in (".", "..")
                for f in pin["files"])


def pin(config: RunConfig, name: str) -> dict:
    """The run's pin of Hub model `name`: {"revision": commit, "files": [...], "pinned": when}, made now when the
    run has none yet (the first pin recorded wins a race, as between the ranks of a multi-GPU training)."""
    uri = config.uri(layout.HUB_REVISIONS)
    found = storage.read_record(uri).get(name)
    if _valid(found):
        return found
    if found is not None:
        log.warning("%s: the pin of %s is not a commit and a file list (%r); pinning it again", uri, name, found)
    revision, files = _current(name)
    made = {"revision": revision, "files": model_files(files),
            "pinned": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if not _valid(made):
        raise ValueError(f"Hub model {name}: found no commit and model files to pin: {made}")

    def keep_first(record):
        record = record if isinstance(record, dict) else {}
        return {**record, name: record[name] if _valid(record.get(name)) else made}

    kept = storage.update_json(uri, keep_first)[name]
    log.info("pinned Hub model %s at %s for this run (%d files)", name, kept["revision"], len(kept["files"]))
    return kept


def _current(name: str) -> tuple[str, list[str]]:
    """The commit the Hub's main branch of `name` points to, and its files; offline (HF_HUB_OFFLINE, a model
    baked into the image's cache), the cached copy's."""
    if constants.HF_HUB_OFFLINE:
        folder = Path(snapshot_download(name))  # the snapshot main pointed to when it was cached
        return folder.name, [p.name for p in folder.iterdir()]
    info = HfApi(endpoint=_endpoint(), token=_token()).model_info(name)
    return info.sha, [s.rfilename for s in info.siblings or []]


def _endpoint() -> str | None:
    """HF_ENDPOINT as it is now (a private Hub), as the registry reads it; huggingface_hub read it at import."""
    return os.environ.get("HF_ENDPOINT") or None


def _token() -> str | None:
    """HF_TOKEN (a private or gated model), sent even where implicit tokens are turned off."""
    return os.environ.get("HF_TOKEN") or None


def local_copy(config: RunConfig, name: str) -> tuple[str, str]:
    """(where to load model `name` from in this run, what to call it): a local folder as it is; a Hub model's pinned
    files, downloaded into the Hugging Face cache (only what is missing there), called `name@commit`."""
    if not locations.is_hub_model(name):
        return name, name
    pinned = pin(config, name)
    folder = snapshot_download(name, revision=pinned["revision"], allow_patterns=pinned["files"],
                               endpoint=_endpoint(), token=_token())
    return folder, f"{name}@{pinned['revision'][:12]}"


def pinned_revisions(config: RunConfig) -> dict[str, str]:
    """Hub model → the commit this run pinned it at (what the model card links)."""
    return {name: found["revision"] for name, found in storage.read_record(config.uri(layout.HUB_REVISIONS)).items()
            if _valid(found)}


def carry_over(parent: RunConfig, child: RunConfig) -> None:
    """Give a run made from another (a learning-curve point) the other's pins, so it loads the same commits."""
    pins = {k: v for k, v in storage.read_record(parent.uri(layout.HUB_REVISIONS)).items() if _valid(v)}
    if pins:
        storage.update_json(child.uri(layout.HUB_REVISIONS), lambda record: {
            **pins, **{k: v for k, v in (record if isinstance(record, dict) else {}).items() if _valid(v)}})
