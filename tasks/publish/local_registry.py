"""A registry in a folder or an S3 prefix, for the offline demo and air-gapped sites (see registry.py)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

from tasks.io import storage
from tasks.publish.registry import (
    RELEASE_FILE,
    PublishedRevision,
    Registry,
    RegistryMovedError,
    Release,
    holds_model,
    run_key_of_tag,
)

log = logging.getLogger(__name__)

INDEX_FILE = "index.json"
VERSIONS = "versions"


class LocalRegistry(Registry):
    """A folder or S3 prefix laid out as `{root}/{repo_id}/versions/<run tag>/…` plus `{root}/{repo_id}/index.json`.

    A version folder is complete once its release.json exists (written last), and published once index.json
    lists it. index.json is changed by compare-and-swap (`storage.update_json`: a file lock locally, a conditional
    write on S3), so of two publishes at once that both checked the same champion, one indexes its release and the
    other finds the registry moved, as on the Hub.
    """

    target = "local"

    def __init__(self, registry_uri: str, repo_id: str):
        self.root, self.repo_id = registry_uri, repo_id
        self.repo_uri = storage.join(registry_uri, repo_id)

    def _index(self) -> dict:
        uri = storage.join(self.repo_uri, INDEX_FILE)
        if storage.exists(uri):
            return storage.read_json(uri)
        return {"repo_id": self.repo_id, "current": None, "versions": []}

    def _revision(self, entry: dict) -> PublishedRevision:
        return PublishedRevision(target=self.target, repo_id=self.repo_id, run_tag=entry["run_tag"],
                                 revision=entry["run_tag"], url=self._version_uri(entry["run_tag"]),
                                 endpoint=self.root)

    def _version_uri(self, tag: str) -> str:
        return storage.join(self.repo_uri, VERSIONS, tag)

    def find_run(self, run_tag: str) -> PublishedRevision | None:
        key = run_key_of_tag(run_tag)
        entry = next((e for e in self._index()["versions"] if run_key_of_tag(e["run_tag"]) == key), None)
        return self._revision(entry) if entry else None

    def current_revision(self) -> str | None:
        return self._index()["current"]

    def _check_unmoved(self, release: Release, index: dict) -> None:
        if index["current"] != release.expected_head:
            raise RegistryMovedError(self.repo_id, release, index["current"])

    def latest(self) -> PublishedRevision | None:
        index = self._index()
        entry = next((e for e in index["versions"] if e["run_tag"] == index["current"]), None)
        if entry is None:
            return None
        try:
            files = [o.relpath for o in storage.list_objects(self._version_uri(entry["run_tag"]))]
        except FileNotFoundError:  # a local folder deleted
            files = []
        if not holds_model(files):  # deleted or emptied by hand (a model withdrawn): nothing users could load
            log.warning("%s is index.json's current version but holds no model: no champion",
                        self._version_uri(entry["run_tag"]))
            return None
        return self._revision(entry)

    def publish(self, folder: Path, release: Release) -> PublishedRevision:
        if release.create_pr:
            raise ValueError("a local registry has no pull requests; review mode needs the Hub")
        if (found := self.find_run(release.run_tag)) is not None:
            log.info("run %s is already in the registry as %s; nothing to publish", release.run_id, found.url)
            return found
        try:
            self._check_unmoved(release, self._index())
        except RegistryMovedError:  # by this run's own release? Another attempt of the run indexed it meanwhile
            if (found := self.find_run(release.run_tag)) is None:
                raise
            return found
        version_uri = self._version_uri(release.run_tag)
        done_marker = storage.join(version_uri, RELEASE_FILE)
        if not storage.exists(done_marker):  # else a crash hit between copying and indexing: copy nothing again
            storage.upload_tree(folder, version_uri)
            storage.write_bytes(done_marker, release.manifest())
        def add(index: dict | None) -> dict:
            # Checked again, and written only if the index is still the one checked (compare-and-swap): copying a
            # model takes a while, and a release that another publish indexed meanwhile must not be dropped.
            index = index or self._index()
            if any(v["run_tag"] == release.run_tag for v in index["versions"]):
                return index  # indexed already: a conditional write that landed though its answer was lost
            self._check_unmoved(release, index)
            index["versions"].append({"run_tag": release.run_tag, "dag_id": release.dag_id, "run_id": release.run_id,
                                      "title": release.title,
                                      "published_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
            index["current"] = release.run_tag
            return index

        index = storage.update_json(storage.join(self.repo_uri, INDEX_FILE), add)
        log.info("published %s to %s", release.run_tag, version_uri)
        return self._revision(index["versions"][-1])

    def download(self, revision: PublishedRevision, local_dir: Path) -> Path:
        return storage.download_tree(self._version_uri(revision.revision), Path(local_dir))
