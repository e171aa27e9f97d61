"""Where promoted models are published and found again: the Hugging Face Hub, or a local registry.

Every published run is one pinned revision, named by its **run tag** `run-<YYYYMMDD>-<8 hex>`: the hex is a
hash of `dag_id/run_id`, so the same DAG run always gets the same tag, and a retried or re-run publish finds
its earlier release instead of making a second one. Each release also carries `release.json` (who published
it) and, on the Hub, a marker line `mt-retrain-run: <dag_id>/<run_id>` in its commit description, so a
release is still found when the step died between committing and tagging.

Two implementations share one interface:
- `HubRegistry` (tasks/hub_registry.py): a Hub model repo; a release is a commit on main with a git tag, or
  a pull request in review mode.
- `LocalRegistry` (here): a folder or S3 prefix for the offline demo and air-gapped sites,
  `{registry_uri}/{repo_id}/versions/<run tag>/` side by side, plus `index.json` naming the current one.

`latest()` answers "which model is the champion now" (on the Hub: what main serves, whose release.json names
the run, so a merged review PR counts; locally: index.json's current), and `download()` fetches it for the
next run's gate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from tasks import storage
from tasks.config import RunConfig

log = logging.getLogger(__name__)

RELEASE_FILE = "release.json"
INDEX_FILE = "index.json"
VERSIONS = "versions"
MARKER_PREFIX = "mt-retrain-run: "
_TAG = re.compile(r"run-(\d{8})-([0-9a-f]{8})")
_DATE_IN_RUN_ID = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_MARKER = re.compile(r"^" + re.escape(MARKER_PREFIX) + r"(.+)$", re.M)


def run_key(dag_id: str, run_id: str) -> str:
    """8 hex digits that identify a DAG run; the stable part of its run tag."""
    return hashlib.sha256(f"{dag_id}/{run_id}".encode()).hexdigest()[:8]


def run_tag(dag_id: str, run_id: str, today: datetime | None = None) -> str:
    """`run-<YYYYMMDD>-<key>`. The date is the one in Airflow's run id (manual__2026-11-27T…), else today's:
    only the key identifies the run, so a tag dated differently by a retry after midnight still matches."""
    if m := _DATE_IN_RUN_ID.search(run_id):
        date = "".join(m.groups())
    else:
        date = (today or datetime.now(timezone.utc)).strftime("%Y%m%d")
    return f"run-{date}-{run_key(dag_id, run_id)}"


def tag_in(text: str) -> str | None:
    """The first run tag in `text` (a tag name, a commit or pull request title), or None."""
    m = _TAG.search(text or "")
    return m[0] if m else None


def run_key_of_tag(text: str) -> str | None:
    """The run key of the first run tag in `text`, or None."""
    m = _TAG.search(text or "")
    return m[2] if m else None


def key_of_marker(message: str) -> str | None:
    """The run key of a commit description's `mt-retrain-run:` marker line, or None."""
    m = _MARKER.search(message or "")
    if not m:
        return None
    dag_id, _, run_id = m[1].strip().partition("/")
    return run_key(dag_id, run_id) if run_id else None


@dataclass(frozen=True)
class Release:
    """What one run publishes besides its files: identity, the commit/PR text, and review mode."""

    dag_id: str
    run_id: str
    run_tag: str
    title: str
    details: str = ""
    create_pr: bool = False

    @property
    def key(self) -> str:
        return run_key(self.dag_id, self.run_id)

    @property
    def description(self) -> str:
        """Commit (or PR) description: the details for a reviewer, then the marker that makes it findable."""
        return f"{self.details.rstrip()}\n\n{MARKER_PREFIX}{self.dag_id}/{self.run_id}\n".lstrip()

    def manifest(self) -> bytes:
        """release.json: which run a registry revision came from, readable by any client."""
        body = {"run_tag": self.run_tag, "dag_id": self.dag_id, "run_id": self.run_id, "published_by": "mt-retrain"}
        return (json.dumps(body, indent=2) + "\n").encode()


@dataclass(frozen=True)
class PublishedRevision:
    """One release as a registry holds it; `record()` is what publish.json and XCom carry."""

    target: str  # "hub" | "local"
    repo_id: str
    run_tag: str
    revision: str  # Hub: the commit id; local: the version folder's name (the run tag)
    url: str  # where a person looks at it: the commit, the pull request, or the version folder
    endpoint: str  # the Hub endpoint, or the registry URI of a local registry
    pr_url: str | None = None  # set in review mode: the release waits in this pull request
    tagged: bool = True  # False: a Hub commit whose run tag is still to be created

    def record(self) -> dict:
        """publish.json and the publish task's XCom; `tag` is what users pin (None while in review)."""
        record = {k: v for k, v in asdict(self).items() if k != "tagged"}
        record.update(commit_url=self.url if self.target == "hub" and not self.pr_url else None,
                      tag=self.run_tag if self.tagged and not self.pr_url else None)
        return record


class Registry(ABC):
    """A model registry for one repository. Every method is safe to call again after a failure."""

    target: str
    repo_id: str

    @abstractmethod
    def publish(self, folder: Path, release: Release) -> PublishedRevision:
        """Publish `folder` as `release`; an earlier publish of the same run is returned, not repeated."""

    @abstractmethod
    def find_run(self, run_tag: str) -> PublishedRevision | None:
        """The release of the run with this tag (any date), or None if it was never published."""

    @abstractmethod
    def latest(self) -> PublishedRevision | None:
        """The champion: the release the registry serves now (Hub: main; local: index.json's current)."""

    @abstractmethod
    def download(self, revision: PublishedRevision, local_dir: Path) -> Path:
        """The files of `revision` in `local_dir`, ready for `from_pretrained(local_dir)`."""


class LocalRegistry(Registry):
    """A folder or S3 prefix laid out as `{root}/{repo_id}/versions/<run tag>/…` plus `{root}/{repo_id}/index.json`.

    A version folder is complete once its release.json exists (written last), and published once index.json
    lists it. index.json is rewritten whole by one writer at a time: the DAG runs one publish per repo at once
    (max_active_runs=1); several DAGs publishing to one repo need the Hub's commits instead.
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

    def latest(self) -> PublishedRevision | None:
        index = self._index()
        entry = next((e for e in index["versions"] if e["run_tag"] == index["current"]), None)
        return self._revision(entry) if entry else None

    def publish(self, folder: Path, release: Release) -> PublishedRevision:
        if release.create_pr:
            raise ValueError("a local registry has no pull requests; review mode needs the Hub")
        if (found := self.find_run(release.run_tag)) is not None:
            log.info("run %s is already in the registry as %s; nothing to publish", release.run_id, found.url)
            return found
        version_uri = self._version_uri(release.run_tag)
        done_marker = storage.join(version_uri, RELEASE_FILE)
        if not storage.exists(done_marker):  # else a crash hit between copying and indexing: copy nothing again
            storage.upload_tree(folder, version_uri)
            storage.write_bytes(done_marker, release.manifest())
        index = self._index()
        index["versions"].append({"run_tag": release.run_tag, "dag_id": release.dag_id, "run_id": release.run_id,
                                  "title": release.title,
                                  "published_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        index["current"] = release.run_tag
        storage.write_json(storage.join(self.repo_uri, INDEX_FILE), index)
        log.info("published %s to %s", release.run_tag, version_uri)
        return self._revision(index["versions"][-1])

    def download(self, revision: PublishedRevision, local_dir: Path) -> Path:
        return storage.download_tree(self._version_uri(revision.revision), Path(local_dir))


def open_registry(config: RunConfig, token: str | None = None, endpoint: str | None = None) -> Registry:
    """The registry a run config publishes to (and reads its champion from)."""
    if config.publish_target == "local":
        return LocalRegistry(config.registry_uri, config.hub_repo_id)
    from tasks.hub_registry import HubRegistry

    return HubRegistry(config.hub_repo_id, token=token, endpoint=endpoint, private=config.hub_private)
