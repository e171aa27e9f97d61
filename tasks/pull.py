"""pull: copy the fresh parallel data from an S3 prefix or a local folder into the run's raw/ folder.

What was pulled (key, ETag, size) is recorded in `pull_manifest.json`, so a run can be traced back to the
exact objects it trained on. A retried pull finds the manifest and does nothing again.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from tasks import formats, storage
from tasks.config import RunConfig

log = logging.getLogger(__name__)

MANIFEST = "pull_manifest.json"
RAW = "raw"


class NoDataError(RuntimeError):
    """The data URI holds no file that the pipeline can read."""


def run(config: RunConfig) -> dict:
    manifest_uri = config.uri(MANIFEST)
    if storage.exists(manifest_uri):
        log.info("pull already done for this run: %s", manifest_uri)
        return summarize(storage.read_json(manifest_uri))

    listed = _snapshot(config.data_snapshot) if config.data_snapshot else storage.list_objects(config.data_uri)
    wanted = [o for o in listed if Path(o.relpath).suffix.lower() in formats.READERS]
    ignored = [o.relpath for o in listed if o not in wanted]
    if ignored:
        log.warning("ignoring %d file(s) of unsupported type under %s: %s", len(ignored), config.data_uri,
                    ", ".join(ignored[:10]))
    if not wanted:
        raise NoDataError(f"{config.data_uri}: no data files found (supported: {sorted(formats.READERS)}; "
                          f"{len(listed)} other file(s) present)")

    with tempfile.TemporaryDirectory() as scratch:
        for obj in wanted:
            target_uri = config.uri(RAW, obj.relpath)
            if storage.is_s3(config.run_dir) or storage.is_s3(obj.uri):
                local = storage.download(obj.uri, Path(scratch) / obj.relpath)
                storage.upload_file(local, target_uri)
            else:
                storage.upload_file(Path(obj.uri), target_uri)
            log.info("pulled %s (%d bytes, etag %s)", obj.uri, obj.size, obj.etag)

    manifest = {
        "source": config.data_snapshot or config.data_uri,
        "pulled_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "objects": [{"uri": o.uri, "relpath": o.relpath, "etag": o.etag, "size": o.size} for o in wanted],
        "ignored": ignored,
    }
    # The manifest is written last: its presence means every raw file is in place.
    storage.write_json(manifest_uri, manifest)
    return summarize(manifest)


def _snapshot(uris: list[str]) -> list[storage.StoredObject]:
    """The listed objects only, named in raw/ by bucket and key so equal file names cannot collide."""
    found = []
    for uri in uris:
        parent = uri.rsplit("/", 1)[0]
        match = [o for o in storage.list_objects(parent) if o.uri == uri]
        if not match:
            raise NoDataError(f"data_snapshot: {uri} does not exist (any more)")
        found.append(storage.StoredObject(uri, uri.removeprefix("s3://").lstrip("/"), match[0].size, match[0].etag))
    return found


def summarize(manifest: dict) -> dict:
    return {"files": len(manifest["objects"]), "bytes": sum(o["size"] for o in manifest["objects"]),
            "source": manifest["source"]}
