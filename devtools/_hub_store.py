"""Disk-backed state of the local Hub: repos, commit history, branches, tags and pull requests.

Layout: ``<root>/<type>s/<namespace>/<name>/repo.json`` holds a repo's metadata and history,
``.../blobs/<git-sha1>`` the file contents. It is reloaded at start, so a restarted server (the demo
starts it as a subprocess) still serves what was published before.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

REPO_TYPES = ("model", "dataset", "space")
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_REF_NAME = re.compile(r"[\w.-]+(/[\w.-]+)*")
_PR_REF = re.compile(r"refs/pr/(\d+)")
_OID = re.compile(r"[0-9a-f]{40}")


class HubError(Exception):
    """A request the Hub refuses. `code` becomes the X-Error-Code header, which the client maps to
    RepositoryNotFoundError / RevisionNotFoundError / RemoteEntryNotFoundError."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def git_blob_oid(data: bytes) -> str:
    # Same id as `git hash-object`: the client compares it with its own to skip unchanged files,
    # and uses it as the ETag that names blobs in its download cache.
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def now_iso() -> str:
    # The client's parse_datetime only accepts this exact shape.
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _check_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise HubError(400, f"Invalid path in repo: {path!r}")
    return path


class HubStore:
    """All repos of one hub. Methods lock `self.lock` (re-entrant) so callers can also hold it
    across several calls to read a consistent state."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self._repos: dict[tuple[str, str], dict] = {}
        for meta in sorted(self.root.glob("*/*/*/repo.json")):
            repo = json.loads(meta.read_text())
            self._repos[(repo["type"], repo["id"])] = repo

    # ---- repos ---------------------------------------------------------------------------------
    def _dir(self, repo: dict) -> Path:
        return self.root / f"{repo['type']}s" / repo["id"]

    def _save(self, repo: dict) -> None:
        path = self._dir(repo) / "repo.json"
        tmp = path.with_name(f"repo.json.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(repo, indent=1))
        os.replace(tmp, path)  # readers (and a crash) never see a half-written file

    def get(self, repo_type: str, repo_id: str) -> dict:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository Not Found: {repo_type}s/{repo_id}", "RepoNotFound")
        return repo

    def list_repos(self) -> list[tuple[str, str]]:
        with self.lock:
            return sorted(self._repos)

    def create_repo(self, repo_type: str, repo_id: str, *, private: bool) -> dict:
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type: {repo_type!r}")
        if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id:
            raise HubError(400, f"Invalid repo id: {repo_id!r} (expected 'namespace/name')")
        with self.lock:
            if (repo_type, repo_id) in self._repos:
                raise HubError(409, f"You already created this {repo_type} repo")
            repo = {"type": repo_type, "id": repo_id, "private": bool(private), "createdAt": now_iso(),
                    "commits": {}, "branches": {}, "tags": {}, "discussions": []}
            (self._dir(repo) / "blobs").mkdir(parents=True, exist_ok=True)
            # Like the Hub, a new repo has one commit, so `main` resolves from the start.
            repo["branches"]["main"] = self._new_commit(repo, [], {}, "initial commit", "", "system")
            self._repos[(repo_type, repo_id)] = repo
            self._save(repo)
            return repo

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        with self.lock:
            repo = self.get(repo_type, repo_id)
            del self._repos[(repo_type, repo_id)]
            shutil.rmtree(self._dir(repo))

    # ---- blobs and commits ----------------------------------------------------------------------
    def _put_blob(self, repo: dict, data: bytes) -> str:
        oid = git_blob_oid(data)
        path = self._dir(repo) / "blobs" / oid
        if not path.exists():
            tmp = path.with_name(f"{oid}.{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return oid

    def read_blob(self, repo: dict, blob: str) -> bytes:
        return (self._dir(repo) / "blobs" / blob).read_bytes()

    def blob_size(self, repo: dict, blob: str) -> int:
        return (self._dir(repo) / "blobs" / blob).stat().st_size

    def _new_commit(self, repo, parents, files, title, message, author) -> str:
        date = now_iso()
        # The commit count keeps ids unique even for identical content committed in the same millisecond.
        body = json.dumps([parents, files, title, message, author, date, len(repo["commits"])], sort_keys=True)
        oid = hashlib.sha1(body.encode()).hexdigest()
        repo["commits"][oid] = {"oid": oid, "parents": parents, "files": files, "title": title,
                                "message": message, "author": author, "date": date}
        return oid

    def commit_info(self, repo: dict, oid: str) -> dict:
        return repo["commits"][oid]

    def log(self, repo: dict, oid: str) -> list[dict]:
        """First-parent history, newest first (the order list_repo_commits documents)."""
        out = []
        while oid:
            commit = repo["commits"][oid]
            out.append(commit)
            oid = commit["parents"][0] if commit["parents"] else None
        return out

    # ---- refs -----------------------------------------------------------------------------------
    def resolve(self, repo: dict, revision: str) -> str:
        """Commit oid for a branch, tag, refs/heads|tags/..., refs/pr/N or full commit id."""
        branches, tags = repo["branches"], repo["tags"]
        if revision.startswith("refs/heads/") and revision[11:] in branches:
            return branches[revision[11:]]
        if revision.startswith("refs/tags/") and revision[10:] in tags:
            return tags[revision[10:]]["target"]
        if (m := _PR_REF.fullmatch(revision)) and (pr := self._pr(repo, int(m[1]))):
            return pr["head"]
        if revision in branches:
            return branches[revision]
        if revision in tags:
            return tags[revision]["target"]
        if _OID.fullmatch(revision) and revision in repo["commits"]:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _pr(self, repo: dict, num: int) -> dict | None:
        if 1 <= num <= len(repo["discussions"]) and repo["discussions"][num - 1]["isPullRequest"]:
            return repo["discussions"][num - 1]
        return None

    def _writable_ref(self, repo: dict, revision: str) -> str:
        """Normalise a commit target to a branch name or 'refs/pr/N'; tags and commit ids are read-only."""
        name = revision.removeprefix("refs/heads/")
        if name in repo["branches"]:
            return name
        if (m := _PR_REF.fullmatch(revision)) and self._pr(repo, int(m[1])):
            return revision
        self.resolve(repo, revision)  # 404 RevisionNotFound if it is nothing at all
        raise HubError(400, f"Cannot commit to {revision!r}: only branches and pull request refs are writable")

    def _head(self, repo: dict, ref: str) -> str:
        m = _PR_REF.fullmatch(ref)
        return self._pr(repo, int(m[1]))["head"] if m else repo["branches"][ref]

    def create_tag(self, repo_type, repo_id, tag: str, revision: str, message: str = "") -> str:
        with self.lock:
            repo = self.get(repo_type, repo_id)
            oid = self.resolve(repo, revision)
            if not _REF_NAME.fullmatch(tag) or ".." in tag or tag.startswith("refs/"):
                raise HubError(400, f"Invalid tag name: {tag!r}")
            if tag in repo["tags"]:
                raise HubError(409, f"Tag {tag} already exists")
            repo["tags"][tag] = {"target": oid, "message": message or "", "date": now_iso()}
            self._save(repo)
            return oid

    def delete_tag(self, repo_type, repo_id, tag: str) -> None:
        with self.lock:
            repo = self.get(repo_type, repo_id)
            if repo["tags"].pop(tag, None) is None:
                raise HubError(404, f"Invalid rev id: {tag}", "RevisionNotFound")
            self._save(repo)

    def create_branch(self, repo_type, repo_id, branch: str, starting_point: str | None = None) -> str:
        with self.lock:
            repo = self.get(repo_type, repo_id)
            oid = self.resolve(repo, starting_point or "main")
            if not _REF_NAME.fullmatch(branch) or ".." in branch or branch.startswith("refs/"):
                raise HubError(400, f"Invalid branch name: {branch!r}")
            if branch in repo["branches"]:
                raise HubError(409, f"Branch {branch} already exists")
            repo["branches"][branch] = oid
            self._save(repo)
            return oid

    # ---- commits --------------------------------------------------------------------------------
    def commit(self, repo_type, repo_id, revision: str, operations: list[tuple[str, str, bytes | None]], *,
               title: str, message: str = "", author: str, parent_commit: str | None = None,
               create_pr: bool = False) -> tuple[str, int | None]:
        """Apply ('file', path, data) / ('deletedFile', path, None) / ('deletedFolder', path, None)
        on top of `revision` (or of a new PR opened against it). Returns (commit oid, PR number or None)."""
        with self.lock:
            repo = self.get(repo_type, repo_id)
            ref = self._writable_ref(repo, revision)
            if create_pr and ref not in repo["branches"]:
                raise HubError(400, "create_pr needs a branch as base revision")
            head = self._head(repo, ref)
            if parent_commit and parent_commit != head:
                if not create_pr:  # the Hub's answer, word for word: the client shows it to the user
                    raise HubError(412, "A commit has happened since. Please refresh and try again.")
                head = self.resolve(repo, parent_commit)  # like the Hub, a pull request starts from the parent
            files = dict(repo["commits"][head]["files"])
            # Refs move only after every operation applied cleanly, so a bad request changes nothing visible.
            for kind, path, data in operations:
                _check_path(path.rstrip("/") if kind == "deletedFolder" else path)
                if kind == "file":
                    files[path] = self._put_blob(repo, data)
                elif kind == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                elif kind == "deletedFolder":
                    doomed = [p for p in files if p.startswith(path.rstrip("/") + "/")]
                    if not doomed:
                        raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for p in doomed:
                        del files[p]
                else:
                    raise HubError(400, f"Unsupported commit operation: {kind!r}")
            if create_pr:
                ref = f"refs/pr/{self._add_discussion(repo, title, message, author, True, ref)['num']}"
            oid = self._new_commit(repo, [head], files, title, message, author)
            pr_num = None
            if m := _PR_REF.fullmatch(ref):
                pr = self._pr(repo, int(m[1]))
                pr["head"], pr_num = oid, pr["num"]
                pr["events"].append(self._event("commit", author, {"subject": title, "oid": oid}))
                if pr["status"] == "draft":  # a PR stays draft until it carries changes
                    pr["status"] = "open"
            else:
                repo["branches"][ref] = oid
            self._save(repo)
            return oid, pr_num

    # ---- discussions and pull requests ---------------------------------------------------------
    @staticmethod
    def _event(kind: str, author: str, data: dict) -> dict:
        return {"id": uuid.uuid4().hex[:24], "type": kind, "createdAt": now_iso(),
                "author": {"name": author}, "data": data}

    def _add_discussion(self, repo, title, description, author, is_pr, base) -> dict:
        comment = {"edited": False, "hidden": False, "latest": {"raw": description or ""}}
        d = {"num": len(repo["discussions"]) + 1, "title": title, "description": description or "",
             "author": author, "createdAt": now_iso(), "isPullRequest": is_pr,
             "status": "draft" if is_pr else "open", "events": [self._event("comment", author, comment)]}
        if is_pr:
            d.update(base=base, head=repo["branches"][base])
        repo["discussions"].append(d)
        return d

    def add_discussion(self, repo_type, repo_id, *, title: str, description: str, author: str,
                       pull_request: bool, base: str = "main") -> dict:
        with self.lock:
            repo = self.get(repo_type, repo_id)
            if pull_request and base not in repo["branches"]:
                raise HubError(404, f"Invalid rev id: {base}", "RevisionNotFound")
            d = self._add_discussion(repo, title, description, author, pull_request, base)
            self._save(repo)
            return d

    def discussion(self, repo: dict, num: int) -> dict:
        if not 1 <= num <= len(repo["discussions"]):
            raise HubError(404, f"Discussion {num} not found")
        return repo["discussions"][num - 1]
