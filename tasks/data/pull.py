"""pull: copy the data objects that are new since the last successful run into the run's raw/ folder.

"New" means not consumed by a successful run of this pipeline: a key never seen, or a key whose ETag
changed (a rewritten object counts as new). What a run consumed lives in the pipeline's state area
(`{state_dir}/consumed.json`). Pull only *records* what the run would consume, in `pull_manifest.json` in the
run directory; `commit_consumed` marks it consumed when the whole run has succeeded (the DAG's last
step), so a failed run consumes nothing and the next run sees the same objects as new.

A retried or re-run pull of the same DAG run finds its manifest and pulls nothing again. With nothing new
the manifest says so and the run ends early (skipped, not failed). `force_full_retrain` pulls every object;
`data_snapshot` pulls exactly the listed objects: the keys a new-data event announced (the data watcher sets
it), or an old run's objects to reproduce it. A successful snapshot run consumes what it pulled, like any
other run, so the weekly fallback does not train on announced keys again.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from tasks import layout
from tasks.config import RunConfig
from tasks.io import formats, storage

log = logging.getLogger(__name__)

class NoDataError(RuntimeError):
    """The data URI (or the snapshot) holds no file that the pipeline can read."""


def run(config: RunConfig) -> dict:
    if (done := result(config)) is not None:
        log.info("pull already done for this run: %s", config.uri(layout.PULL_MANIFEST))
        return done

    if config.data_snapshot:
        mode, wanted, ignored = "snapshot", _snapshot_objects(config.data_snapshot), []
        consumed = {}
    else:
        mode = "full" if config.force_full_retrain else "incremental"
        wanted, ignored = _data_objects(config.data_uri)
        consumed = load_consumed(config)
        if not wanted and not consumed:
            raise NoDataError(f"{config.data_uri}: no data files found (supported extensions: "
                              f"{sorted(formats.EXTENSIONS)}; {len(ignored)} other file(s) present)")
    fresh = wanted if mode != "incremental" else [o for o in wanted if consumed.get(o.uri, {}).get("etag") != o.etag]
    changed = [o.relpath for o in fresh if o.uri in consumed]

    with tempfile.TemporaryDirectory() as scratch:
        for obj in fresh:
            target_uri = config.uri(layout.RAW, obj.relpath)
            if storage.is_s3(config.run_dir) or storage.is_s3(obj.uri):
                storage.upload_file(storage.download(obj.uri, Path(scratch) / obj.relpath), target_uri)
            else:
                storage.upload_file(Path(obj.uri), target_uri)
            log.info("pulled %s (%d bytes, etag %s)%s", obj.uri, obj.size, obj.etag,
                     " (changed since consumed)" if obj.relpath in changed else "")

    manifest = {
        "source": config.data_snapshot or config.data_uri,
        "mode": mode,
        "pulled_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "objects": [{"uri": o.uri, "relpath": o.relpath, "etag": o.etag, "size": o.size} for o in fresh],
        "changed": changed,
        "already_consumed": len(wanted) - len(fresh),
        "ignored": ignored,
        "nothing_new": not fresh,
        "message": _message(config, mode, fresh, changed, len(wanted) - len(fresh)),
    }
    log.info("%s", manifest["message"])
    # The manifest is written last: its presence means every raw file is in place.
    storage.write_json(config.uri(layout.PULL_MANIFEST), manifest)
    return summarize(manifest)


def _data_objects(data_uri: str) -> tuple[list[storage.StoredObject], list[str]]:
    """The objects under the data URI that a reader exists for, and the names of the others (ignored)."""
    listed = storage.list_objects(data_uri)
    wanted = [o for o in listed if Path(o.relpath).suffix.lower() in formats.EXTENSIONS]
    ignored = [o.relpath for o in listed if o not in wanted]
    if ignored:
        log.warning("ignoring %d file(s) of unsupported type under %s: %s", len(ignored), data_uri,
                    ", ".join(ignored[:10]))
    return wanted, ignored


def _snapshot_objects(uris: list[str]) -> list[storage.StoredObject]:
    """The snapshot's objects (a folder or a prefix ending in '/' stands for what is in it), named in raw/
    by their full location so that two files of the same name cannot collide."""
    found = []
    for uri in uris:
        if uri.endswith("/") or (not storage.is_s3(uri) and Path(uri).is_dir()):
            objects = storage.list_objects(uri)
        else:
            try:
                objects = [storage.stat(uri)]
            except FileNotFoundError:
                raise NoDataError(f"data_snapshot: {uri} does not exist (any more)") from None
        for obj in objects:
            location = obj.uri.removeprefix("s3://").lstrip("/")
            found.append(storage.StoredObject(obj.uri, location, obj.size, obj.etag))
    if not found:
        raise NoDataError(f"data_snapshot {uris}: no files")
    return found


def _message(config: RunConfig, mode: str, fresh: list, changed: list, skipped: int) -> str:
    if mode == "snapshot":
        return f"snapshot: {len(fresh)} object(s) as listed in data_snapshot"
    if not fresh:
        return (f"nothing new under {config.data_uri}: all {skipped} data object(s) were consumed by earlier "
                f"successful runs; trigger with force_full_retrain to retrain on everything")
    what = f"{len(fresh) - len(changed)} new" + (f" and {len(changed)} changed" if changed else "") + " object(s)"
    return f"{what} under {config.data_uri}" + (f"; {skipped} already consumed" if skipped else "") + \
        (" (force_full_retrain: consumed ones included)" if mode == "full" else "")


def result(config: RunConfig) -> dict | None:
    """The summary of a finished pull, or None when this run has not pulled yet."""
    manifest = storage.read_json_or(config.uri(layout.PULL_MANIFEST))
    return None if manifest is None else summarize(manifest)


def summarize(manifest: dict) -> dict:
    return {"files": len(manifest["objects"]), "bytes": sum(o["size"] for o in manifest["objects"]),
            "source": manifest["source"], "mode": manifest["mode"], "nothing_new": manifest["nothing_new"],
            "message": manifest["message"]}


def load_consumed(config: RunConfig) -> dict[str, dict]:
    """uri → {etag, size, consumed_by, consumed_at} of every object consumed by a successful run."""
    return storage.read_json_or(config.state_uri(layout.CONSUMED), {"objects": {}})["objects"]


def commit_consumed(config: RunConfig) -> dict:
    """Mark what this run pulled as consumed; call only when the whole run succeeded. Idempotent."""
    manifest = storage.read_json_or(config.uri(layout.PULL_MANIFEST))
    if manifest is None:
        return {"committed": 0, "reason": "this run pulled nothing"}
    if not manifest["objects"]:
        return {"committed": 0, "reason": "nothing new was pulled"}
    consumed = load_consumed(config)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for obj in manifest["objects"]:
        consumed[obj["uri"]] = {"etag": obj["etag"], "size": obj["size"], "consumed_by": config.run_id,
                                "consumed_at": now}
    storage.write_json(config.state_uri(layout.CONSUMED), {"objects": consumed})
    log.info("marked %d object(s) consumed in %s", len(manifest["objects"]), config.state_uri(layout.CONSUMED))
    return {"committed": len(manifest["objects"]), "consumed_total": len(consumed)}
