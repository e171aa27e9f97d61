"""Where promoted models are published and found again: the Hugging Face Hub, or a local registry.

Every published run is one pinned revision, named by its **run tag** `run-<YYYYMMDD>-<8 hex>`: the hex is a
hash of `dag_id/run_id`, so the same DAG run always gets the same tag, and a retried or re-run publish finds
its earlier release instead of making a second one. Each release also carries `release.json` (who published
it) and, on the Hub, a marker line `mt-retrain-run: <dag_id>/<run_id>` in its commit description, so a
release is still found when the step died between committing and tagging.

Two implementations share one interface (`targets.open_registry` picks one for a run's `publish_target`):
- `HubRegistry` (hub_registry.py): a Hub model repo; a release is a commit on main with a git tag, or a pull
  request in review mode.
- `LocalRegistry` (local_registry.py): a folder or S3 prefix for the offline demo and air-gapped sites,
  `{registry_uri}/{repo_id}/versions/<run tag>/` side by side, plus `index.json` naming the current one.

`latest()` answers "which model is the champion now" (on the Hub: what main serves, whose release.json names
the run, so a merged review PR counts, or a model uploaded there by hand; locally: index.json's current), and
`download()` fetches it for the next run's gate.

A release replaces only the model its gate compared against. The champion step records what the registry
served then (`current_revision()`: main's commit id on the Hub, index.json's current run tag locally, None when
nothing was there); the release carries it as `expected_head`, and publishing refuses with
`RegistryMovedError` when the registry moved since (another pipeline published, a review PR was merged). On
the Hub the commit is sent with that `parentCommit`, so the Hub itself refuses a main that moves at the last
moment. A run that already published is found first, so its retries never see its own release as a move.
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

log = logging.getLogger(__name__)

RELEASE_FILE = "release.json"
MARKER_PREFIX = "mt-retrain-run: "
_TAG = re.compile(r"run-(\d{8})-([0-9a-f]{8})")
_DATE_IN_RUN_ID = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_MARKER = re.compile(r"^" + re.escape(MARKER_PREFIX) + r"(.+)$", re.M)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack")  # with config.json: a model from_pretrained loads


def holds_model(paths) -> bool:
    """Whether a revision with these file paths serves a model: config.json and weights at its top level. A
    release whose weights were deleted (a model withdrawn) serves none, whatever its release.json says."""
    top = {name for name in paths if "/" not in name}
    return "config.json" in top and any(name.endswith(WEIGHT_SUFFIXES) for name in top)


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


class RegistryMovedError(RuntimeError):
    """The registry serves something else than when the gate's champion was looked up: publishing would replace
    a model the gate never compared against. Retrying does not help; a new run evaluates against it."""

    def __init__(self, repo_id: str, release: "Release", now: str | None):
        seen = release.expected_head or "no release"
        super().__init__(
            f"not publishing {release.run_tag} to {repo_id}: the registry moved since the champion lookup. The "
            f"gate compared the candidate against {seen}; {repo_id} now serves {now or 'no release'}. Nothing was "
            f"published or replaced; trigger a new run to evaluate against what it serves now.")


@dataclass(frozen=True)
class Release:
    """What one run publishes besides its files: identity, the commit/PR text, review mode, and what the
    registry must still serve for the release to go ahead (`expected_head`, see the module docstring)."""

    dag_id: str
    run_id: str
    run_tag: str
    title: str
    details: str = ""
    create_pr: bool = False
    expected_head: str | None = None
    base_model: str | None = None  # what the model was fine-tuned from: a later init_from = champion checks it

    @property
    def key(self) -> str:
        return run_key(self.dag_id, self.run_id)

    @property
    def description(self) -> str:
        """Commit (or PR) description: the details for a reviewer, then the marker that makes it findable."""
        return f"{self.details.rstrip()}\n\n{MARKER_PREFIX}{self.dag_id}/{self.run_id}\n".lstrip()

    def manifest(self) -> bytes:
        """release.json: which run a registry revision came from, readable by any client."""
        body = {"run_tag": self.run_tag, "dag_id": self.dag_id, "run_id": self.run_id, "published_by": "mt-retrain",
                **({"base_model": self.base_model} if self.base_model else {})}
        return (json.dumps(body, indent=2) + "\n").encode()


@dataclass(frozen=True)
class PublishedRevision:
    """One release as a registry holds it; `record()` is what publish.json and XCom carry."""

    target: str  # "hub" | "local"
    repo_id: str
    run_tag: str | None  # None: a model on the Hub's main that this workflow did not publish (no release.json)
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
    def current_revision(self) -> str | None:
        """What the registry serves now (Hub: main's commit id; local: index.json's current run tag), whether a
        release of this workflow or not; None when it holds nothing yet."""

    @abstractmethod
    def latest(self) -> PublishedRevision | None:
        """The champion: the release the registry serves now (Hub: main; local: index.json's current). On the Hub,
        a model main serves without this workflow's release.json (uploaded by hand) is the champion too, with
        run_tag None; None when the registry serves no model."""

    @abstractmethod
    def download(self, revision: PublishedRevision, local_dir: Path) -> Path:
        """The files of `revision` in `local_dir`, ready for `from_pretrained(local_dir)`."""
