"""The Hub endpoints of the local hub: URL routing and one handler per route, on top of HubStore.

Paths, payloads and response fields follow what huggingface_hub 2.4 sends and reads (hf_api.py,
_commit_api.py, _upload_pipeline.py, file_download.py), not the full Hub API.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import yaml

from ._hub_store import HubError, HubStore, now_iso

_API = r"/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"
# Matched on the still-quoted path: the client sends a revision as one segment with '/' escaped
# (refs%2Fpr%2F1), so groups are unquoted only after matching.
ROUTES = [
    ("whoami", "GET", r"/api/whoami-v2"),
    ("validate_yaml", "POST", r"/api/validate-yaml"),
    ("create_repo", "POST", r"/api/repos/create"),
    ("delete_repo", "DELETE", r"/api/repos/delete"),
    ("preupload", "POST", _API + r"/preupload/(?P<rev>[^/]+)"),
    ("commit", "POST", _API + r"/commit/(?P<rev>[^/]+)"),
    ("tree", "GET", _API + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?"),
    ("refs", "GET", _API + r"/refs"),
    ("commits", "GET", _API + r"/commits/(?P<rev>[^/]+)"),
    ("create_tag", "POST", _API + r"/tag/(?P<rev>[^/]+)"),
    ("delete_tag", "DELETE", _API + r"/tag/(?P<rev>[^/]+)"),
    ("create_branch", "POST", _API + r"/branch/(?P<rev>[^/]+)"),
    ("discussions", "GET", _API + r"/discussions"),
    ("create_discussion", "POST", _API + r"/discussions"),
    ("discussion", "GET", _API + r"/discussions/(?P<num>\d+)"),
    ("repo_info", "GET", _API + r"(?:/revision/(?P<rev>[^/]+))?"),
    ("resolve", "GET HEAD",
     r"/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)"),
]
_ROUTES = [(name, methods.split(), re.compile(rx)) for name, methods, rx in ROUTES]
ENDPOINTS = frozenset(name for name, _, _ in ROUTES)
_TYPE_OF = {"models": "model", "datasets": "dataset", "spaces": "space", None: "model"}
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(\n|\Z)", re.S)


def card_data(readme: str) -> dict | None:
    """The YAML metadata block of a README.md, or None. Raises ValueError when it is malformed."""
    if not (m := _FRONT_MATTER.match(readme)):
        return None
    try:
        data = yaml.safe_load(m[1])
    except yaml.YAMLError as e:
        raise ValueError(f"Invalid YAML in README.md metadata: {e}") from e
    if data is not None and not isinstance(data, dict):
        raise ValueError("README.md metadata must be a YAML mapping")
    return data


def check_model_index(data: dict | None) -> None:
    """Like the Hub, refuse a model-index that does not follow the spec (task, dataset and metrics with their
    required keys; the client's own parser is the reference), and a license it does not list. Raises ValueError."""
    from huggingface_hub.repocard_data import model_index_to_eval_results

    from tasks.config import HUB_LICENSES

    if data and "license" in data and data["license"] not in HUB_LICENSES:
        raise ValueError(f'Invalid metadata in README.md.\n- "license" must be one of [{", ".join(HUB_LICENSES)}]')

    if data and "model-index" in data:
        try:
            model_index_to_eval_results(data["model-index"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"Invalid model-index in README.md metadata: {e!r}") from e


@dataclass
class Request:
    method: str
    params: dict  # unquoted route groups
    query: dict
    headers: Any  # http.client.HTTPMessage: case-insensitive get()
    body: bytes
    base_url: str
    role: str | None  # "read" / "write", None when anonymous

    def arg(self, key: str, default: str | None = None) -> str | None:
        return self.query.get(key, [default])[0]

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError as e:
            raise HubError(400, f"Invalid JSON body: {e}") from e

    @property
    def repo_type(self) -> str:
        return _TYPE_OF[self.params.get("type")]

    @property
    def repo_id(self) -> str:
        return self.params["repo"]


def ascii_header(text: str) -> str:
    """Header-safe form of an error message (http.server encodes headers as latin-1, one line each)."""
    return text.encode("ascii", "replace").decode().replace("\r", " ").replace("\n", " ")


def route(method: str, quoted_path: str) -> tuple[str | None, dict]:
    """(route name, unquoted path parameters), or (None, {}) when nothing matches."""
    for name, methods, rx in _ROUTES:
        if method in methods and (m := rx.fullmatch(quoted_path)):
            return name, {k: unquote(v) for k, v in m.groupdict().items() if v is not None}
    return None, {}


class HubApi:
    """Serves one routed, authenticated request. Callers hold `store.lock` around `call`, so each
    request sees one consistent state."""

    def __init__(self, store: HubStore, user: str):
        self.store, self.user = store, user

    def call(self, endpoint: str, req: Request) -> tuple[int, dict, Any]:
        """(status, extra headers, JSON-able payload or raw bytes); refusals raise HubError."""
        result = getattr(self, f"_api_{endpoint}")(req)
        return result if isinstance(result, tuple) else (200, {}, result)

    def _repo(self, req: Request) -> dict:
        repo = self.store.get(req.repo_type, req.repo_id)
        if repo["private"] and req.role is None:
            raise HubError(401, f"Repository Not Found: {req.repo_id}", "RepoNotFound")
        return repo

    @staticmethod
    def _repo_url(req: Request, repo_type: str, repo_id: str) -> str:
        return f"{req.base_url}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"

    def _files_at(self, req: Request, default_rev: str = "main") -> tuple[dict, str, dict]:
        repo = self._repo(req)
        oid = self.store.resolve(repo, req.params.get("rev", default_rev))
        return repo, oid, self.store.commit_info(repo, oid)["files"]

    # ---- endpoints: one _api_<route name> per ROUTES entry ----------------------------------------
    def _api_whoami(self, req):
        return {"type": "user", "id": hashlib.sha1(self.user.encode()).hexdigest()[:24], "name": self.user,
                "fullname": self.user, "email": None, "emailVerified": False, "isPro": False, "orgs": [],
                "auth": {"type": "access_token",
                         "accessToken": {"displayName": "local-hub", "role": req.role, "createdAt": now_iso()}}}

    def _api_validate_yaml(self, req):
        try:
            check_model_index(card_data(req.json().get("content") or ""))
        except ValueError as e:
            return 400, {}, {"error": str(e), "errors": [{"message": str(e)}], "warnings": []}
        return {"errors": [], "warnings": []}

    def _api_create_repo(self, req):
        body = req.json()
        if not body.get("name"):
            raise HubError(400, "Missing repo name")
        repo_type, repo_id = body.get("type") or "model", f"{body.get('organization') or self.user}/{body['name']}"
        url = self._repo_url(req, repo_type, repo_id)
        private = body.get("visibility") == "private" or bool(body.get("private"))
        try:
            self.store.create_repo(repo_type, repo_id, private=private)
        except HubError as e:
            if e.status != 409:
                raise
            return 409, {}, {"error": e.message, "url": url}  # create_repo(exist_ok=True) tolerates this 409
        return {"url": url, "name": repo_id, "id": repo_id}

    def _api_delete_repo(self, req):
        body = req.json()
        self.store.delete_repo(body.get("type") or "model", f"{body.get('organization') or self.user}/{body['name']}")
        return {}

    def _api_preupload(self, req):
        _, oid, files = self._files_at(req)
        # "oid" lets the client drop files identical to the remote ones from the commit.
        return {"commitOid": oid, "files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                             "oid": files.get(f["path"])} for f in req.json().get("files", [])]}

    def _api_commit(self, req):
        self._repo(req)
        lines = [json.loads(line) for line in req.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header" or not lines[0]["value"].get("summary"):
            raise HubError(400, "A commit needs a header line with a non-empty summary")
        header, ops = lines[0]["value"], []
        for item in lines[1:]:
            key, value = item["key"], item["value"]
            if key == "file":
                raw = value["content"]
                ops.append(("file", value["path"], base64.b64decode(raw, validate=True)
                            if value.get("encoding") == "base64" else raw.encode()))
            elif key in ("deletedFile", "deletedFolder"):
                ops.append((key, value["path"], None))
            else:  # "lfsFile" cannot happen: preupload never answers "lfs"
                raise HubError(400, f"Unsupported commit line {key!r}: the local hub stores regular files only")
        oid, pr_num = self.store.commit(
            req.repo_type, req.repo_id, req.params["rev"], ops, title=header["summary"],
            message=header.get("description") or "", author=self.user, parent_commit=header.get("parentCommit"),
            create_pr=req.arg("create_pr") == "1")
        url = self._repo_url(req, req.repo_type, req.repo_id)
        return {"success": True, "commitOid": oid, "commitUrl": f"{url}/commit/{oid}",
                "commitMessage": header["summary"], "hookOutput": "",
                "pullRequestUrl": f"{url}/discussions/{pr_num}" if pr_num else None}

    def _api_tree(self, req):
        repo, oid, files = self._files_at(req)
        base = (req.params.get("path") or "").strip("/")
        prefix, recursive = base + "/" if base else "", req.arg("recursive", "false").lower() in ("1", "true")
        entries: dict[str, dict] = {}
        for path, blob in sorted(files.items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            for i in range(1, len(parts) if recursive else min(len(parts), 2)):
                d = prefix + "/".join(parts[:i])
                entries.setdefault(d, {"type": "directory", "oid": hashlib.sha1(f"{oid}:{d}".encode()).hexdigest(),
                                       "size": 0, "path": d})
            if recursive or len(parts) == 1:
                entries[path] = {"type": "file", "oid": blob, "size": self.store.blob_size(repo, blob), "path": path}
        if base and not entries:
            raise HubError(404, f"Path {base} does not exist at {req.params['rev']}", "EntryNotFound")
        return list(entries.values())

    def _api_refs(self, req):
        repo = self._repo(req)
        ref = lambda name, full, oid: {"name": name, "ref": full, "targetCommit": oid}  # noqa: E731
        out = {"branches": [ref(b, f"refs/heads/{b}", o) for b, o in sorted(repo["branches"].items())],
               "tags": [ref(t, f"refs/tags/{t}", v["target"]) for t, v in sorted(repo["tags"].items())],
               "converts": []}
        if req.arg("include_prs") in ("1", "true"):
            out["pullRequests"] = [ref(f"refs/pr/{d['num']}", f"refs/pr/{d['num']}", d["head"])
                                   for d in repo["discussions"] if d["isPullRequest"]]
        return out

    def _api_commits(self, req):
        repo, oid, _ = self._files_at(req)
        return [{"id": c["oid"], "title": c["title"], "message": c["message"], "date": c["date"],
                 "authors": [{"user": c["author"]}]} for c in self.store.log(repo, oid)]

    def _api_create_tag(self, req):
        body = req.json()
        oid = self.store.create_tag(req.repo_type, req.repo_id, body["tag"], req.params["rev"], body.get("message"))
        return {"name": body["tag"], "ref": f"refs/tags/{body['tag']}", "targetCommit": oid}

    def _api_delete_tag(self, req):
        self.store.delete_tag(req.repo_type, req.repo_id, req.params["rev"])
        return {}

    def _api_create_branch(self, req):
        self.store.create_branch(req.repo_type, req.repo_id, req.params["rev"], req.json().get("startingPoint"))
        return {}

    def _discussion_json(self, req, d: dict) -> dict:
        return {"num": d["num"], "title": d["title"], "status": d["status"], "createdAt": d["createdAt"],
                "isPullRequest": d["isPullRequest"], "author": {"name": d["author"]}, "pinned": False,
                "repo": {"name": req.repo_id, "type": req.repo_type}, "numComments": 1, "topReactions": []}

    def _api_discussions(self, req):
        repo = self._repo(req)
        kind, status, author = req.arg("type", "all"), req.arg("status", "all"), req.arg("author")
        groups = {"open": ("open", "draft"), "closed": ("closed", "merged")}
        found = [d for d in repo["discussions"]
                 if kind == "all" or (kind == "pull_request") == d["isPullRequest"]
                 if status == "all" or d["status"] in groups.get(status, (status,))
                 if author is None or d["author"] == author]
        page = [self._discussion_json(req, d) for d in found] if req.arg("p", "0") == "0" else []
        return {"discussions": page, "count": len(found), "start": 0,
                "numClosedDiscussions": sum(d["status"] in ("closed", "merged") for d in repo["discussions"])}

    def _api_create_discussion(self, req):
        self._repo(req)
        body = req.json()
        if len(title := (body.get("title") or "").strip()) < 3:
            raise HubError(400, "Title must be at least 3 characters long")
        d = self.store.add_discussion(req.repo_type, req.repo_id, title=title, author=self.user,
                                      description=body.get("description") or "",
                                      pull_request=bool(body.get("pullRequest")))
        url = self._repo_url(req, req.repo_type, req.repo_id)
        return {"num": d["num"], "pullRequest": d["isPullRequest"], "url": f"{url}/discussions/{d['num']}"}

    def _api_discussion(self, req):
        d = self.store.discussion(self._repo(req), int(req.params["num"]))
        out = {**self._discussion_json(req, d), "events": d["events"], "filesWithConflicts": [], "diff": ""}
        if d["isPullRequest"]:
            out["changes"] = {"base": f"refs/heads/{d['base']}", "mergeCommitId": None}
        return out

    def _api_repo_info(self, req):
        repo, oid, files = self._files_at(req)
        try:
            card = card_data(self.store.read_blob(repo, files["README.md"]).decode()) if "README.md" in files else None
        except (ValueError, UnicodeDecodeError):
            card = None  # the Hub serves broken metadata as "no metadata" rather than failing repo_info
        info = {"id": req.repo_id, "author": req.repo_id.split("/")[0], "sha": oid, "private": repo["private"],
                "lastModified": self.store.commit_info(repo, oid)["date"], "createdAt": repo["createdAt"],
                "gated": False, "disabled": False, "downloads": 0, "likes": 0,
                "tags": list((card or {}).get("tags") or []),
                "siblings": [{"rfilename": p, "size": self.store.blob_size(repo, b)} for p, b in sorted(files.items())]}
        if card is not None:
            info.update(cardData=card, library_name=card.get("library_name"), pipeline_tag=card.get("pipeline_tag"))
        return info

    def _api_resolve(self, req):
        repo, oid, files = self._files_at(req)
        if (blob := files.get(req.params["path"])) is None:
            message = f"Entry not found: {req.params['path']}"
            # X-Repo-Commit on the 404 lets the client cache the file's absence for this commit.
            headers = {"X-Error-Code": "EntryNotFound", "X-Error-Message": ascii_header(message), "X-Repo-Commit": oid}
            return 404, headers, {"error": message}
        data = self.store.read_blob(repo, blob)
        # Without X-Repo-Commit and an ETag the client refuses the file (FileMetadataError).
        headers = {"X-Repo-Commit": oid, "ETag": f'"{blob}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if m := re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", req.headers.get("Range") or ""):  # resumed downloads
            size = len(data)
            start, end = (int(m[1]), int(m[2] or size - 1)) if m[1] else (max(size - int(m[2] or 0), 0), size - 1)
            if start > min(end, size - 1):
                return 416, {"Content-Range": f"bytes */{size}"}, {"error": "Requested range not satisfiable"}
            end = min(end, size - 1)
            return 206, {**headers, "Content-Range": f"bytes {start}-{end}/{size}"}, data[start:end + 1]
        return 200, headers, data
