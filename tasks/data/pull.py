"""pull: copy the data objects that are new since the last successful run into the run's raw/ folder.

"New" means not consumed by a successful run of this pipeline: a key never seen, or a key whose ETag changed (a
rewritten object counts as new; a local file's ETag is a digest of its content). What was consumed lives in
the pipeline's state area (tasks/data/consumed.py). Pull only *records* what the run would consume, in
`pull_manifest.json`; the DAG's `mark_consumed` commits it once the run's gate has decided, so a run that fails
before consumes nothing and the next run sees the same objects as new.

Every listed object ends in exactly one of two lists of the manifest, `objects` (pulled) or `ignored` (with its
reason): a hidden name, a file type no reader reads, a symbolic link, or a key that is unsafe as a name (a `.`
or `..` segment, an empty segment, a control character). An object key is data, never a path: each pulled
object gets a flat name in raw/ made of a hash of its URI and its sanitised base name, so no key can place a
file outside raw/ or overwrite another one.

With `training_data: all` (the default) the manifest also lists the objects consumed by earlier runs under
`carried`: validate adds their cleaned copies to the new data, so each week's candidate learns from the whole
domain corpus (an object consumed before cleaned copies were kept has none: it is pulled again instead).
`force_full_retrain` pulls every object again; `data_snapshot` pulls exactly the listed objects and carries
none, each at the version it pins, if it does (`URI#etag=...`, `URI#version=...`): the manifest's `reproduce`
lists a run's training objects so pinned. A retried pull of the same DAG
run finds its manifest and pulls nothing again; with nothing new the run ends early (skipped, not failed).
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from tasks import layout
from tasks.config import RunConfig
from tasks.data import consumed as consumed_state
from tasks.io import compression, formats, storage

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 80  # of the readable part of a raw/ name


class NoDataError(RuntimeError):
    """The data URI (or the snapshot) holds no file that the pipeline can read."""


def key_problem(key: str) -> str | None:
    """Why an object key cannot name a data file, or None. Keys are data written by other people."""
    if re.search(r"[\x00-\x1f\x7f-\x9f]", key):
        return "the key contains a control character"
    segments = key.split("/")
    if any(s in (".", "..") for s in segments):
        return "the key has a '.' or '..' segment: as a path it would name another place"
    if any(s == "" for s in segments):
        return "the key has an empty segment ('//' or a leading '/')"
    if any(s.startswith(".") for s in segments):
        return "a hidden name (a segment starting with '.'): temporary or system file"
    suffix = Path(compression.data_name(segments[-1])).suffix.lower()
    if suffix not in formats.EXTENSIONS:
        return f"not a data file: {suffix or 'no extension'} is not one of {sorted(formats.EXTENSIONS)}"
    return None


def raw_name(uri: str, key: str) -> str:
    """A flat, bounded, safe name in raw/, unique by a hash of the object's URI, readable by its base name."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", key.rsplit("/", 1)[-1]).lstrip(".-") or "object"
    if len(base) > MAX_NAME_CHARS:
        suffixes = "".join(Path(base).suffixes[-2:])[:20]
        base = base[:MAX_NAME_CHARS - len(suffixes)] + suffixes
    return f"{hashlib.blake2b(uri.encode(), digest_size=6).hexdigest()}-{base}"


@dataclass(frozen=True)
class Listing:
    data: list[storage.StoredObject]  # relpath: the key relative to data_uri
    ignored: list[dict]  # {key, uri, reason}


def classify(objects: list[storage.StoredObject]) -> Listing:
    """Split listed objects into data files and ignored ones, each with its reason (also used by the watcher)."""
    data, ignored = [], []
    for obj in objects:
        reason = "a symbolic link: only regular files are pulled" if obj.link else key_problem(obj.relpath)
        if reason:
            ignored.append({"key": obj.relpath, "uri": obj.uri, "reason": reason})
        else:
            data.append(obj)
    return Listing(data, ignored)


# A data_snapshot entry may pin the version it names: `URI#etag=<ETag>` (as a run's manifest records it, in its
# `reproduce` list) or, on a versioned S3 bucket, `URI#version=<VersionId>`.
_PIN = re.compile(r"#(etag|version)=([^#/]+)$")


def _pin(entry: str) -> tuple[str, str | None, str | None]:
    """(URI, 'etag' | 'version' | None, the pinned value)."""
    found = _PIN.search(entry)
    return (entry[:found.start()], found.group(1), found.group(2)) if found else (entry, None, None)


def _snapshot(config: RunConfig) -> list[storage.StoredObject]:
    """The snapshot's objects (a URI ending in '/' stands for what is under it), keyed relative to data_uri."""
    prefix = config.data_uri.rstrip("/") + "/"
    found: dict[str, storage.StoredObject] = {}  # by URI: a file also named by its folder is pulled once
    for entry in config.data_snapshot:
        uri, pin, value = _pin(entry)
        if uri.endswith("/") or (not storage.is_s3(uri) and Path(uri).is_dir()):
            if pin:
                raise NoDataError(f"data_snapshot: {entry}: a folder cannot be pinned; list its objects, each with "
                                  "its own pin")
            for o in storage.list_objects(uri, hidden=True):
                found.setdefault(o.uri, replace(o, relpath=o.uri[len(prefix):]))
            continue
        obj = _pinned(uri, pin, value)
        found.setdefault(obj.uri, replace(obj, relpath=uri[len(prefix):]))
    return list(found.values())


def _pinned(uri: str, pin: str | None, value: str | None) -> storage.StoredObject:
    """The object a snapshot entry names: its current version, or the one it pins (found among the versions a
    versioned S3 bucket keeps when the object was rewritten or deleted since)."""
    try:
        if pin == "version":
            return storage.stat(uri, version=value)
        current = storage.stat(uri)
    except FileNotFoundError as err:
        if pin is None:
            raise NoDataError(f"data_snapshot: {uri} does not exist (any more)") from None
        if pin == "version":
            raise NoDataError(f"data_snapshot: {uri}#version={value}: {err}") from None
        current = None
    if pin is None or (current is not None and current.etag == value):
        return current
    version = storage.version_with_etag(uri, value)
    if version is not None:
        log.info("data_snapshot: %s pinned to ETag %s: version %s (the object has changed since)", uri, value,
                 version)
        return storage.stat(uri, version=version)
    now = "it is gone" if current is None else f"its ETag is now {current.etag}"
    raise NoDataError(f"data_snapshot: {uri} is no longer the object pinned (ETag {value}): {now}, and no older "
                      "version with that ETag is kept (only a versioned S3 bucket keeps them), so the snapshot "
                      "cannot be reproduced")


def run(config: RunConfig) -> dict:
    if (done := result(config)) is not None:
        log.info("pull already done for this run: %s", config.uri(layout.PULL_MANIFEST))
        return done
    mode = "snapshot" if config.data_snapshot else "full" if config.force_full_retrain else "incremental"
    retractions, dropped_now = consumed_state.retract(config)
    listing = classify(_snapshot(config) if mode == "snapshot" else _listed(config))
    retracted = [{"key": o.relpath, "uri": o.uri, "retracted": r} for o in listing.data
                 if (r := consumed_state.retracted_by(o.uri, retractions)) is not None]
    listing = replace(listing, data=[o for o in listing.data if o.uri not in {r["uri"] for r in retracted}])
    for item in listing.ignored:
        log.warning("ignored %s: %s", item["key"], item["reason"])
    for item in retracted:
        log.info("not pulled: %s is retracted (retract_data %s)", item["key"], item["retracted"])
    consumed = consumed_state.load(config)
    no_data = _no_data(config, mode, listing) if not listing.data and (mode == "snapshot" or not consumed) else None
    # A local file's digest is read only when it must be compared; a new file is read once, as it is copied.
    changed = {o.uri for o in listing.data if o.uri in consumed and consumed[o.uri].get("etag") != o.etag}
    missing = _missing_copies(config, consumed)
    fresh = [o for o in listing.data if mode != "incremental" or o.uri not in consumed or o.uri in changed
             or _without_cleaned_copy(config, consumed[o.uri]) or o.uri in missing]
    pulled_again = {o.uri for o in fresh}
    lost = _lost(config, consumed, missing - pulled_again, mode) + _never_copied(config, consumed, pulled_again, mode)
    for item in lost:
        log.warning("consumed object %s not trained on: %s", item["key"], item["reason"])
    manifest = {
        "source": config.data_snapshot or config.data_uri, "mode": mode, "training_data": config.training_data,
        "pulled_at": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
        "objects": _copy(config, fresh),
        "changed": [o.relpath for o in fresh if o.uri in changed],
        "again": [o.relpath for o in fresh if o.uri in consumed and o.uri not in changed and o.uri not in missing],
        "recopied": [o.relpath for o in fresh if o.uri in missing and o.uri not in changed],
        "lost": lost,
        "carried": _carried(config, consumed, pulled_again | missing, mode),
        "already_consumed": len(listing.data) - len(fresh),
        "ignored": listing.ignored,
        # Every retraction in force, the objects at the source it keeps out, and the consumed objects this run's
        # retract_data took out of the corpus: a corpus that lost objects is trained on again, new data or not.
        "retractions": retractions, "retracted": retracted, "retracted_consumed": dropped_now,
        "nothing_new": not fresh and not dropped_now,
        "no_data": no_data,  # why a language of several has nothing new: no data yet and no history
    }
    # What reproduces this run's training data: every object it trains on, pinned (a snapshot trains on exactly
    # its objects, so the carried ones are listed too, at the version their copy was made from).
    manifest["reproduce"] = {"data_snapshot": [_pinned_entry(o) for o in manifest["objects"] + manifest["carried"]],
                             "training_data": "new_only"}
    manifest["message"] = _message(config, manifest)
    log.info("%s", manifest["message"])
    # The manifest is written last: its presence means every raw file is in place.
    storage.write_json(config.uri(layout.PULL_MANIFEST), manifest)
    return summarize(manifest)


def _listed(config: RunConfig) -> list[storage.StoredObject]:
    """The objects under data_uri. A language of a multi-language run whose folder does not exist yet has none."""
    try:
        return storage.list_objects(config.data_uri, hidden=True)
    except FileNotFoundError:
        if config.languages_in_run < 2:
            raise
        log.info("%s does not exist (yet): no data for %s-%s", config.data_uri, config.source_lang, config.target_lang)
        return []


def _no_data(config: RunConfig, mode: str, listing: Listing) -> str:
    """A run with no data file to read and no consumed history fails (NoDataError), unless it is one language of a
    run with several: that language has nothing new (its steps skip) and the others go on. Returns why."""
    where = f"data_snapshot {config.data_snapshot}" if mode == "snapshot" else config.data_uri
    reasons = "".join(f"; {i['key']}: {i['reason']}" for i in listing.ignored[:5])
    found = (f"{where}: no data files found (supported extensions: {sorted(formats.EXTENSIONS)}, optionally "
             f"compressed; {len(listing.ignored)} other object(s) ignored{reasons})")
    if mode == "snapshot" or config.languages_in_run < 2:
        raise NoDataError(found)
    if misnamed := _misnamed_folders(config.data_uri):
        raise NoDataError(f"{found}; but {config.data_uri.rstrip('/').rsplit('/', 1)[0]}/ holds {misnamed}, named "
                          f"like this pair's folder: a pair's data is read from {{data_uri}}/"
                          f"{config.source_lang}-{config.target_lang}/ exactly (lower case, '-'): move it there")
    return (f"nothing new for {config.source_lang}-{config.target_lang}: {found}, and no earlier run consumed any; "
            "this language is skipped, the run's other languages go on")


def _misnamed_folders(pair_uri: str) -> list[str]:
    """Folders beside a pair's folder that name the same pair otherwise (`EN-DE`, `en_de`, `en.de`): data landed
    there is never read, and the pair would be skipped as having none, week after week."""
    parent, _, name = pair_uri.rstrip("/").rpartition("/")
    letters = re.sub(r"[^a-z]", "", name.lower())
    return [folder for folder in storage.list_folders(parent + "/")
            if folder != name and re.sub(r"[^a-z]", "", folder.lower()) == letters]


def _copy(config: RunConfig, fresh: list[storage.StoredObject]) -> list[dict]:
    pulled = []
    with tempfile.TemporaryDirectory() as scratch:
        for obj in fresh:
            local = raw_name(obj.uri, obj.relpath)
            target_uri = config.uri(layout.RAW, local)
            # What is recorded as consumed is the content really copied: an object rewritten since it was listed
            # is taken with its new ETag, as it is now (a manifest that pinned the listed one reproduced other data).
            if storage.is_s3(obj.uri):
                got = storage.download_object(obj.uri, Path(scratch) / local, obj.version)
                etag, size = got.etag, got.size
                storage.upload_file(Path(scratch) / local, target_uri)
            else:  # from a file that is still regular
                staged = Path(scratch) / local if storage.is_s3(config.run_dir) else Path(target_uri)
                etag = storage.copy_regular_file(Path(obj.uri), staged)
                size = staged.stat().st_size
                if staged != Path(target_uri):
                    storage.upload_file(staged, target_uri)
            log.info("pulled %s (%d bytes, etag %s) as raw/%s", obj.uri, size, etag, local)
            pulled.append({"uri": obj.uri, "key": obj.relpath, "etag": etag, "size": size, "local": local,
                           **({"version": obj.version} if obj.version else {})})
    return pulled


def _without_cleaned_copy(config: RunConfig, entry: dict) -> bool:
    """A consumed object with no cleaned copy in the state (consumed before copies were kept) is pulled again
    when training on all data, rather than silently left out of it."""
    return config.training_data == "all" and not entry.get("cache")


def _missing_copies(config: RunConfig, consumed: dict[str, dict]) -> set[str]:
    """Consumed objects whose cleaned copy is gone from the state (deleted by hand, lost with a bucket): a listing
    of the shards, not a request per object. Only training on all data carries copies."""
    if config.training_data != "all" or not consumed:
        return set()
    present = set()
    for folder in {entry["cache"].split("/", 1)[0] for entry in consumed.values() if entry.get("cache")}:
        try:
            present.update(f"{folder}/{o.relpath}" for o in storage.list_objects(config.state_uri(folder)))
        except FileNotFoundError:
            pass
    return {uri for uri, entry in consumed.items() if entry.get("cache") and entry["cache"] not in present}


def _lost(config: RunConfig, consumed: dict[str, dict], missing: set[str], mode: str) -> list[dict]:
    """Consumed objects whose cleaned copy is missing and that this run does not pull again. Outside a snapshot
    the listing saw the whole prefix, so they are gone from the source: dropped from the corpus when the run
    commits. A snapshot lists only its own objects and consumes nothing: it just leaves them out."""
    gone = mode != "snapshot"
    reason = ("its cleaned copy is missing from the pipeline's state and the object is no longer at the source: "
              "dropped from the corpus" if gone else "its cleaned copy is missing from the pipeline's state and "
              "the object is not in this snapshot: not trained on now, pulled again by the next run that lists it")
    return [{"uri": uri, "key": _key(config, uri), "consumed_by": consumed[uri]["consumed_by"],
             "cache": consumed[uri]["cache"], "lines": consumed[uri].get("lines"), "dropped": gone, "reason": reason}
            for uri in sorted(missing)]


def _never_copied(config: RunConfig, consumed: dict[str, dict], pulled_again: set[str], mode: str) -> list[dict]:
    """Objects consumed before cleaned copies were kept (the first version, 2026-11-27) that the listing no longer
    shows: there is no copy to carry and nothing to pull again, so they leave the corpus, said so in `lost` (each
    run warns of them) and dropped from consumed.json by the next run that commits, instead of silently. Those still at the source are pulled again (`fresh`)."""
    if config.training_data != "all" or mode == "snapshot":
        return []
    reason = ("consumed before cleaned copies were kept, and no longer at the source: its rows cannot be trained "
              "on; dropped from the corpus")
    return [{"uri": uri, "key": _key(config, uri), "consumed_by": entry.get("consumed_by"), "cache": None,
             "lines": None, "dropped": True, "reason": reason}
            for uri, entry in sorted(consumed.items()) if not entry.get("cache") and uri not in pulled_again]


def _key(config: RunConfig, uri: str) -> str:
    prefix = config.data_uri.rstrip("/") + "/"
    return uri[len(prefix):] if uri.startswith(prefix) else uri


def _pinned_entry(obj: dict) -> str:
    return f"{obj['uri']}#version={obj['version']}" if obj.get("version") else f"{obj['uri']}#etag={obj['etag']}"


def _carried(config: RunConfig, consumed: dict[str, dict], superseded: set[str], mode: str) -> list[dict]:
    """Objects consumed by earlier runs whose cleaned copies this run trains on too (training_data: all; never in
    a snapshot, which trains on exactly the objects it lists)."""
    if config.training_data != "all" or mode == "snapshot":
        return []
    return [{"uri": uri, "key": _key(config, uri), "etag": entry["etag"], "cache": entry["cache"],
             "lines": entry.get("lines"), "consumed_by": entry["consumed_by"], "rules": entry.get("rules")}
            for uri, entry in sorted(consumed.items()) if uri not in superseded and entry.get("cache")]


def _message(config: RunConfig, manifest: dict) -> str:
    retracted, dropped = manifest["retracted"], manifest["retracted_consumed"]
    said = (f"; {len(dropped)} consumed object(s) retracted from the corpus (retract_data)" if dropped else "") + \
        (f"; {len(retracted)} object(s) at the source not pulled: retracted" if retracted else "")
    return _what_was_pulled(config, manifest) + said


def _what_was_pulled(config: RunConfig, manifest: dict) -> str:
    fresh, changed, skipped = manifest["objects"], manifest["changed"], manifest["already_consumed"]
    carried = f"; {len(manifest['carried'])} consumed object(s) carried into training" if manifest["carried"] else ""
    if manifest.get("no_data"):
        return manifest["no_data"]
    if manifest["mode"] == "snapshot":
        return f"snapshot: {len(fresh)} object(s) as listed in data_snapshot{carried}"
    if not fresh and manifest["nothing_new"]:
        return (f"nothing new under {config.data_uri}: all {skipped} data object(s) were consumed by earlier "
                f"successful runs; trigger with force_full_retrain to retrain on everything")
    if not fresh:
        return f"nothing new under {config.data_uri}; retraining on the corpus left{carried}"
    again = manifest["again"]
    what = f"{len(fresh) - len(changed) - len(again)} new" + (f" and {len(changed)} changed" if changed else "") \
        + " object(s)"
    why_again = "force_full_retrain" if manifest["mode"] == "full" else "consumed before cleaned copies were kept"
    recopied, lost = manifest.get("recopied", []), manifest.get("lost", [])
    return f"{what} under {config.data_uri}" + (f"; {skipped} already consumed" if skipped else "") + carried + \
        (f"; {len(again)} consumed object(s) pulled again ({why_again})" if again else "") + \
        (f"; {len(recopied)} consumed object(s) pulled again (their cleaned copy was missing)" if recopied else "") + \
        (f"; {len(lost)} consumed object(s) not trained on (cleaned copy missing: see the manifest's `lost`)"
         if lost else "")


def result(config: RunConfig) -> dict | None:
    """The summary of a finished pull, or None when this run has not pulled yet."""
    manifest = storage.read_json_or(config.uri(layout.PULL_MANIFEST))
    return None if manifest is None else summarize(manifest)


def summarize(manifest: dict) -> dict:
    return {"files": len(manifest["objects"]), "bytes": sum(o["size"] for o in manifest["objects"]),
            "carried": len(manifest.get("carried", [])), "ignored": len(manifest.get("ignored", [])),
            "source": manifest["source"], "mode": manifest["mode"], "nothing_new": manifest["nothing_new"],
            "message": manifest["message"]}
