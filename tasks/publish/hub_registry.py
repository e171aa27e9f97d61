"""The Hugging Face Hub as a registry: a release is a tagged commit on main, or a pull request in review mode.

Every Hub call goes through `HubRegistry._call`, because huggingface_hub 2.4 retries only some calls by
itself (preupload, commit listings, download metadata) and not create_repo, create_commit's commit,
create_tag, list_repo_refs or the discussions listing. `_call`
- retries transient failures (408, 429, 5xx, timeouts, connection resets) with exponential backoff, and
  waits what a numeric or dated Retry-After header asks for;
- turns 401 and 403 into `HubAccessError` at once, naming the repository and endpoint, never the token;
- scrubs the token from any error it lets through.
A commit is retried as "look for this run's release, then commit": when an attempt's answer is lost after
the Hub applied it (a 504 from a proxy, a reset connection), the next attempt finds the release and stops.

A release commit holds exactly the staged release: it also deletes every file of its parent commit that the
release lacks, so main never serves the previous release's weights (model.safetensors beside a new release's
shards) or its eval/ and provenance/ records under the new card.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable, TypeVar

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.utils import httpx

from tasks.publish.registry import (
    RELEASE_FILE,
    PublishedRevision,
    Registry,
    RegistryMovedError,
    Release,
    holds_model,
    key_of_marker,
    run_key_of_tag,
    tag_in,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
KEPT_FILES = frozenset({".gitattributes"})  # the repository's git settings (LFS patterns), not a release's files


class HubAccessError(PermissionError):
    """The token may not do this on the repository (HTTP 401/403). Retrying does not help."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently transient Hub failures are retried."""

    attempts: int = 6
    base_delay_s: float = 2.0  # doubled after each failure
    max_delay_s: float = 120.0  # a longer Retry-After gives up at once: the task's own retry comes later

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        return min(self.base_delay_s * 2 ** (attempt - 1), self.max_delay_s)


def _status(err: BaseException) -> int | None:
    return getattr(getattr(err, "response", None), "status_code", None)


def _is_transient(err: BaseException) -> bool:
    if (status := _status(err)) is not None:
        return status in TRANSIENT_STATUS
    return isinstance(err, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError,
                            ConnectionError, TimeoutError))


def _files(info) -> set[str]:
    """The paths of every file in a model_info's revision."""
    return {s.rfilename for s in info.siblings or []}


def _holds_model(info) -> bool:
    """Whether a model_info's revision serves a model: config.json and weights at its top level."""
    return holds_model(_files(info))


def retry_after_s(err: BaseException) -> float | None:
    """Seconds a Retry-After header asks to wait (delay-seconds or an HTTP date), or None."""
    response = getattr(err, "response", None)
    value = (response.headers.get("Retry-After") or "").strip() if response is not None else ""
    if not value:
        return None
    if value.replace(".", "", 1).isdigit():
        return float(value)
    try:
        return max((parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


class HubRegistry(Registry):
    """Releases of one Hub model repository. The endpoint is `endpoint`, else HF_ENDPOINT, else huggingface.co."""

    target = "hub"

    def __init__(self, repo_id: str, *, token: str | None = None, endpoint: str | None = None,
                 private: bool = True, retry: RetryPolicy = RetryPolicy()):
        self.repo_id, self.private, self.retry = repo_id, private, retry
        self._token = token or os.environ.get("HF_TOKEN") or None
        self.api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=self._token)
        self.endpoint = self.api.endpoint

    def __repr__(self) -> str:  # never the token
        return f"HubRegistry({self.repo_id!r}, endpoint={self.endpoint!r})"

    # ---- the registry interface ------------------------------------------------------------------
    def publish(self, folder: Path, release: Release) -> PublishedRevision:
        self._call("create_repo", lambda: self.api.create_repo(self.repo_id, repo_type="model",
                                                                private=self.private, exist_ok=True))

        def find_or_commit() -> PublishedRevision:
            if (found := self._find(release.run_tag)) is not None:
                log.info("run %s was already published to %s: %s; no new commit", release.run_id, self.repo_id,
                         found.url)
                return found
            try:
                return self._commit(folder, release)
            except RegistryMovedError:
                # Moved by this run's own release? Another attempt of the run committed since `_find` looked (a
                # worker taken for lost while its attempt still ran): that release is this run's, not a move.
                if (found := self._find(release.run_tag)) is None:
                    raise
                log.info("run %s was published to %s by another attempt meanwhile: %s", release.run_id,
                         self.repo_id, found.url)
                return found

        published = self._call("commit", find_or_commit)
        if not published.tagged and not published.pr_url:
            # Tags only what main serves: a revision in review is not a release users should pin yet.
            self._call("create_tag", lambda: self.api.create_tag(
                self.repo_id, tag=published.run_tag, revision=published.revision, tag_message=release.title,
                exist_ok=True))
            published = replace(published, tagged=True)
        return published

    def find_run(self, run_tag: str) -> PublishedRevision | None:
        return self._call("find_run", lambda: self._find(run_tag), need="read")

    def current_revision(self) -> str | None:
        main = self._main()
        return main.sha if main else None

    def latest(self) -> PublishedRevision | None:
        main = self._main()
        if main is None or not _holds_model(main):
            # Nothing published yet, or main serves no model (a README only, or a release whose weights were
            # deleted: withdrawn): no champion to compare against, and none that evaluate could load.
            return None
        if (tag := self._release_tag(main)) is None:
            # A model on main that this workflow did not publish (uploaded by hand) is what users are served:
            # the champion all the same (run_tag None), so no release replaces it uncompared.
            return self._revision(None, main.sha, tagged=False)
        tags = self._call("list_repo_refs", lambda: self.api.list_repo_refs(self.repo_id), need="read").tags
        return self._revision(tag, main.sha, tagged=any(t.name == tag for t in tags))

    def download(self, revision: PublishedRevision, local_dir: Path) -> Path:
        path = self._call("download", lambda: self.api.snapshot_download(
            self.repo_id, revision=revision.revision, local_dir=str(local_dir)), need="read")
        return Path(path)

    # ---- how a release is found and made ---------------------------------------------------------
    def _main(self):
        """The repository's info at main (its commit id and files), or None when the repository does not exist."""
        try:
            return self._call("model_info", lambda: self.api.model_info(self.repo_id, revision="main"), need="read")
        except RepositoryNotFoundError:
            return None

    def _release_tag(self, main) -> str | None:
        """The run tag of the release at `main` (a model_info), or None when it holds no release of this workflow."""
        if RELEASE_FILE not in _files(main):
            return None
        with tempfile.TemporaryDirectory(prefix="mt-release-") as scratch:
            path = self._call("download", lambda: self.api.hf_hub_download(
                self.repo_id, RELEASE_FILE, revision=main.sha, local_dir=scratch), need="read")
            return json.loads(Path(path).read_text(encoding="utf-8"))["run_tag"]

    def _moved(self, release: Release) -> RegistryMovedError:
        main = self._main()
        tag = self._release_tag(main)
        return RegistryMovedError(self.repo_id, release, f"{main.sha} (release {tag})" if tag else main.sha)

    def _parent(self, release: Release):
        """The model_info of the commit the release builds on: main as the gate's champion lookup saw it (or, when
        the repository did not exist then, main now, if it still serves no model). Checked before any upload; the
        Hub checks it again at the commit."""
        main = self._main()
        if release.expected_head is None:
            moved = _holds_model(main) or self._release_tag(main) is not None
        else:
            moved = main.sha != release.expected_head
        if moved:
            raise self._moved(release)
        return main

    def _revision(self, tag: str | None, sha: str, *, tagged: bool, pr_url: str | None = None) -> PublishedRevision:
        return PublishedRevision(target=self.target, repo_id=self.repo_id, run_tag=tag, revision=sha,
                                 url=pr_url or f"{self.endpoint}/{self.repo_id}/commit/{sha}",
                                 endpoint=self.endpoint, pr_url=pr_url, tagged=tagged)

    def _find(self, run_tag: str) -> PublishedRevision | None:
        """By the run tag, else by the marker in main's history (committed, not yet tagged), else by a pull
        request whose title carries the run tag. Any date in the tag matches: only the run key counts."""
        key = run_key_of_tag(run_tag)
        refs = self.api.list_repo_refs(self.repo_id, include_pull_requests=True)
        for tag in refs.tags:
            if run_key_of_tag(tag.name) == key and tag.name == tag_in(tag.name):
                return self._revision(tag.name, tag.target_commit, tagged=True)
        for commit in self.api.list_repo_commits(self.repo_id):  # main, newest first
            if key_of_marker(commit.message) == key:
                return self._revision(run_tag, commit.commit_id, tagged=False)
        pr_heads = {ref.ref: ref.target_commit for ref in refs.pull_requests or []}
        for pr in self.api.get_repo_discussions(self.repo_id, discussion_type="pull_request"):
            if run_key_of_tag(pr.title) == key:
                log.info("pull request %s for run tag %s is %s", pr.url, tag_in(pr.title), pr.status)
                return self._revision(tag_in(pr.title), pr_heads.get(pr.git_reference, ""), tagged=False,
                                      pr_url=pr.url)
        return None

    def _commit(self, folder: Path, release: Release) -> PublishedRevision:
        # Built anew for every attempt: the client marks operations as used once a commit went through.
        operations = [CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p))
                      for p in sorted(folder.rglob("*")) if p.is_file() and p.relative_to(folder) != Path(RELEASE_FILE)]
        operations.append(CommitOperationAdd(path_in_repo=RELEASE_FILE, path_or_fileobj=release.manifest()))
        parent = self._parent(release)
        staged = {op.path_in_repo for op in operations}
        operations += [CommitOperationDelete(path_in_repo=name)
                       for name in sorted(_files(parent) - staged - KEPT_FILES)]
        # create_commit checks README.md's metadata with the endpoint's /api/validate-yaml before uploading.
        try:
            info = self.api.create_commit(self.repo_id, operations, commit_message=release.title,
                                          commit_description=release.description, create_pr=release.create_pr,
                                          parent_commit=parent.sha)
        except HfHubHTTPError as err:
            if _status(err) == 412:  # "A commit has happened since": main moved after _parent looked
                raise self._moved(release) from None
            raise
        if release.create_pr:
            log.info("opened pull request %s for %s", info.pr_url, release.run_tag)
            return self._revision(release.run_tag, info.oid, tagged=False, pr_url=info.pr_url)
        log.info("committed %s to %s@main as %s", release.run_tag, self.repo_id, info.oid)
        return self._revision(release.run_tag, info.oid, tagged=False)

    # ---- retries and errors ----------------------------------------------------------------------
    def _call(self, what: str, call: Callable[[], T], *, need: str = "write") -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return call()
            except Exception as err:
                status = _status(err)
                if status in (401, 403):
                    raise HubAccessError(self._access_message(what, status, err, need)) from None
                asked = retry_after_s(err)
                wait = self.retry.delay(attempt, asked)
                if not _is_transient(err) or attempt >= self.retry.attempts or wait > self.retry.max_delay_s:
                    if self._token and self._token in str(err):
                        raise RuntimeError(self._scrub(str(err))) from None
                    raise
                reason = f"HTTP {status}" if status else type(err).__name__
                log.warning("%s on %s: %s; retry %d/%d in %.1f s%s", self.repo_id, what, reason, attempt,
                            self.retry.attempts - 1, wait, " (Retry-After)" if asked is not None else "")
                time.sleep(wait)

    def _access_message(self, what: str, status: int, err: BaseException, need: str) -> str:
        server = self._scrub(getattr(err, "server_message", None) or "")
        who = "the Hub token" if self._token else "no Hub token was given, so the request"
        verb = "lacks" if self._token else "has no"
        return (f"{who} {verb} {need} access to {self.repo_id} at {self.endpoint} (HTTP {status} on {what}"
                f"{': ' + server if server else ''}). Use a token with {need} permission for this repository.")

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text
