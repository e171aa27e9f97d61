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
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from huggingface_hub import HfApi, constants, snapshot_download
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.file_download import repo_folder_name

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
    weights (`model.safetensors`, or its shards beside their index), or the PyTorch ones where there are none; a
    variant such as model.fp16.safetensors alone is not what from_pretrained loads."""
    top = [f for f in files if "/" not in f]
    weights = [f for f in top if re.fullmatch(r"model(-\d+-of-\d+)?\.safetensors", f)] or \
        [f for f in top if re.fullmatch(r"pytorch_model(-\d+-of-\d+)?\.bin", f)]
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
    """The commit the Hub's main branch of `name` points to, and its files. Offline (HF_HUB_OFFLINE: a model baked
    into the image's cache) or where the Hub cannot be reached, the cached copy's: what loading by name used then."""
    if constants.HF_HUB_OFFLINE:
        return _cached(name)
    try:
        info = HfApi(endpoint=_endpoint(), token=_token()).model_info(name)
    except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError):
        raise  # the model is not there, or not for this token: no cached copy makes that right
    except Exception as err:  # noqa: BLE001 - the Hub down or unreachable: the cached copy, if there is one
        try:
            found = _cached(name)
        except FileNotFoundError:
            raise err from None
        log.warning("the Hub could not say which commit %s is at (%s: %s); pinning the cached copy %s",
                    name, type(err).__name__, err, found[0])
        return found
    return info.sha, [s.rfilename for s in info.siblings or []]


def _cached(name: str) -> tuple[str, list[str]]:
    """The commit and files of a complete copy of `name` in the Hugging Face cache (its configs and weights: a pod
    killed while downloading leaves a snapshot without them): the one main pointed to when it was downloaded by
    name, else the newest there (downloads of a pinned commit do not record main). Its files are listed from the
    snapshot folder itself (the cache may hold only the files loading needed)."""
    folder = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=name, repo_type="model")
    main = folder / "refs" / "main"
    complete = {p.name: files for p in (folder / "snapshots").glob("*")
                if p.is_dir() and _complete(files := [f.name for f in p.iterdir()])}
    by_age = sorted(complete, key=lambda c: (folder / "snapshots" / c).stat().st_mtime)
    commit = main.read_text().strip() if main.is_file() else by_age[-1] if by_age else None
    if commit not in complete:
        main_says = f"refs/main names {commit}" if main.is_file() else "no refs/main"
        raise FileNotFoundError(f"Hub model {name}: no complete copy in the Hugging Face cache ({folder}) to pin "
                                f"({len(complete)} complete snapshots, {main_says})")
    return commit, complete[commit]


def _complete(files: list[str]) -> bool:
    """A copy a model loads from: its config and one copy of its weights, every shard of them."""
    weights = [f for f in model_files(files) if f.endswith((".safetensors", ".bin"))]
    shards = {int(found.group(1)) for f in weights if (found := re.search(r"-of-(\d+)\.", f))}
    return "config.json" in files and bool(weights) and all(len(weights) == total for total in shards)


def _cache_dir() -> str | None:
    """Where downloads go: None for huggingface_hub's cache (HF_HUB_CACHE, the shared model cache of a pod that
    mounts one, README "MT_MODEL_CACHE"), unless this process cannot write there (a share whose root the image's
    user does not own): then a cache of the process's own, with a warning, rather than a failed step."""
    shared = Path(constants.HF_HUB_CACHE)
    existing = next(p for p in (shared, *shared.parents) if p.exists())
    if os.access(existing, os.W_OK | os.X_OK):
        return None
    own = Path(tempfile.gettempdir()) / f"hf-hub-{os.getuid()}"
    log.warning("the model cache %s cannot be written by uid %d: downloading into %s instead, which the next step "
                "does not share; make the cache's root writable by the image's user", shared, os.getuid(), own)
    return str(own)


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
    try:
        folder = snapshot_download(name, revision=pinned["revision"], allow_patterns=pinned["files"],
                                   endpoint=_endpoint(), token=_token(), cache_dir=_cache_dir())
    except RevisionNotFoundError as err:
        raise RevisionNotFoundError(
            f"Hub model {name}: commit {pinned['revision']}, pinned for this run in "
            f"{config.uri(layout.HUB_REVISIONS)}, is no longer on the Hub (was the branch force-pushed?). This run "
            "cannot load the model it started with; remove that entry to let it pin the current one, knowing its "
            f"steps then load different commits. ({err})", response=err.response) from err
    return folder, f"{name}@{pinned['revision'][:12]}"


def _pins(record) -> dict[str, dict]:
    """The valid pins of a hub_revisions.json record (anything else in it is left out)."""
    return {name: found for name, found in (record if isinstance(record, dict) else {}).items() if _valid(found)}


def pinned_revisions(config: RunConfig) -> dict[str, str]:
    """Hub model → the commit this run pinned it at (what the model card links)."""
    return {name: found["revision"]
            for name, found in _pins(storage.read_record(config.uri(layout.HUB_REVISIONS))).items()}


def carry_over(parent: RunConfig, child: RunConfig) -> None:
    """Give a run made from another (a learning-curve point) the other's pins, so it loads the same commits."""
    if pins := _pins(storage.read_record(parent.uri(layout.HUB_REVISIONS))):
        storage.update_json(child.uri(layout.HUB_REVISIONS), lambda record: {**pins, **_pins(record)})
