"""A local, disk-backed Hugging Face Hub look-alike: the publish target of the offline demo and of tests.

The real client talks to it through ``HfApi(endpoint=hub.url, token=...)``. It serves the part of the
Hub HTTP API that huggingface_hub 2.4 uses to create repos, commit (NDJSON), tag, open pull requests,
list refs / commits / trees, read repo info and download files. Every file is uploaded "regular"
(base64 inside the commit): answering "lfs" would send the client, which has hf_xet installed, to a Xet
storage server that this hub does not emulate.

Modules: this one runs the server (threads, auth, request log, failure injection, CLI); _hub_api.py
routes and answers the endpoints; _hub_store.py keeps repos, commits and refs on disk.

    with LocalHub(tmp_path, tokens={"hf_writer": "write", "hf_reader": "read"}) as hub:
        api = HfApi(endpoint=hub.url, token="hf_writer")
        hub.fail_next("commit", status=503, times=2, headers={"Retry-After": "0"})

What the client retries by itself (huggingface_hub 2.4, on 408/429/500/502/503/504, up to 5 retries,
sleeping 1, 2, 4, 8, 8 s, or Retry-After + 1 s when that header is a number): preupload, the commit
sent by upload_folder (hf_xet installed), tree and commit listings, and the HEAD before a download
(after one unretried try). It does not retry create_repo, validate-yaml, create_commit's commit,
create_tag, refs, repo info, discussions or whoami; the download GET itself retries 408/429 only.
Tests that inject failures should therefore use "Retry-After: 0" and expect one second per retry.
Besides an error status, an injected failure can come after the request was served (the commit happened,
the answer is lost) or drop the connection without an answer (a reset).

CLI, for the demo: ``python -m devtools.local_hub --root DIR --port 0 --token TOKEN`` prints the URL
on the first line of stdout, then serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import re
import signal
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from ._hub_api import ENDPOINTS, ROUTES, HubApi, Request, ascii_header, route
from ._hub_store import HubError, HubStore

__all__ = ["LocalHub", "ROUTES", "main"]
log = logging.getLogger(__name__)
RESET = 0  # status of an injected failure that drops the connection instead of answering


@dataclass
class _Failure:
    match: str
    status: int
    times: int
    headers: dict
    body: Any
    method: str | None
    after_serving: bool = False
    reset: bool = False
    before_serving: Callable[[], None] | None = None  # not a failure: run this, then serve as usual

    def matches(self, method: str, endpoint: str | None, path: str) -> bool:
        if self.method and self.method.upper() != method:
            return False
        return self.match == endpoint if self.match in ENDPOINTS else re.search(self.match, path) is not None


class LocalHub:
    """Hub-compatible HTTP server on 127.0.0.1 (ephemeral port by default), serving from a background thread.

    `tokens` maps each accepted token to "write" or "read". Requests without a valid token get 401
    (unless `anonymous_read` lets GET/HEAD through on public repos); a "read" token gets 403 on writes.
    """

    def __init__(self, root_dir, tokens: Mapping[str, str] | None = None, *, port: int = 0,
                 user: str = "local-user", anonymous_read: bool = False):
        if bad := {t: r for t, r in (tokens or {}).items() if r not in ("read", "write")}:
            raise ValueError(f"token roles must be 'read' or 'write', got {bad}")
        self.store = HubStore(root_dir)
        self.api = HubApi(self.store, user)
        self.root = self.store.root
        self.tokens = dict(tokens or {})
        self.user, self.anonymous_read, self.port = user, anonymous_read, port
        self.url: str | None = None
        self._lock = threading.Lock()  # guards _requests and _failures; the store has its own
        self._requests: list[dict] = []
        self._failures: list[_Failure] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle --------------------------------------------------------------------------------
    def start(self) -> LocalHub:
        if self._server is not None:
            raise RuntimeError(f"LocalHub already serving at {self.url}")
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), type("Handler", (_Handler,), {"hub": self}))
        self._server.daemon_threads = True  # a client stuck mid-request must not block stop()
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"local-hub-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = self._thread = None

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- test hooks -------------------------------------------------------------------------------
    @property
    def requests(self) -> list[dict]:
        """Snapshot of every request received, oldest first: method, path (unquoted), endpoint (route
        name or None), query, headers (Authorization redacted), role, body_size, json, status, injected."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def fail_next(self, match: str, status: int = 503, *, times: int = 1, headers: Mapping[str, str] | None = None,
                  body: Any = None, method: str | None = None, after_serving: bool = False,
                  reset: bool = False) -> None:
        """Answer the next `times` requests matching `match` with `status` instead of serving them.
        `match` is a route name from ROUTES (e.g. "commit", "preupload", "resolve") or else a regex
        searched in the unquoted path. Failures happen before authentication, like a proxy's would.
        `after_serving`: serve the request first (its changes stay), then answer with the failure, like a
        gateway timing out after the backend applied a commit. `reset`: close the connection without any
        answer (the client sees a connection reset); `status` is then ignored."""
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._failures.append(_Failure(match, status, times, dict(headers or {}), body, method,
                                           after_serving, reset))

    def before_next(self, match: str, action: Callable[[], None], *, method: str | None = None) -> None:
        """Run `action()` just before serving the next request matching `match` (as in `fail_next`), which is
        then served as usual: what another client did in between, e.g. a commit that lands on main after a
        client checked main and before its own commit arrives."""
        with self._lock:
            self._failures.append(_Failure(match, 0, 1, {}, None, method, before_serving=action))

    def _take_failure(self, method: str, endpoint: str | None, path: str) -> _Failure | None:
        with self._lock:
            for f in self._failures:
                if f.matches(method, endpoint, path):
                    f.times -= 1
                    if f.times == 0:
                        self._failures.remove(f)
                    return f
        return None

    # ---- state inspection (deep copies, safe to mutate) -------------------------------------------
    def commits(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[dict]:
        """History of `revision`, newest first; each commit's "files" maps path -> bytes."""
        with self.store.lock:
            repo = self.store.get(repo_type, repo_id)
            return [{**copy.deepcopy(c), "files": {p: self.store.read_blob(repo, b) for p, b in c["files"].items()}}
                    for c in self.store.log(repo, self.store.resolve(repo, revision))]

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        with self.store.lock:
            repo = self.store.get(repo_type, repo_id)
            files = self.store.commit_info(repo, self.store.resolve(repo, revision))["files"]
            return {p: self.store.read_blob(repo, b) for p, b in files.items()}

    def branches(self, repo_id: str, repo_type: str = "model") -> dict[str, str]:
        with self.store.lock:
            return dict(self.store.get(repo_type, repo_id)["branches"])

    def tags(self, repo_id: str, repo_type: str = "model") -> dict[str, dict]:
        """tag -> {"target": commit oid, "message": ..., "date": ...}"""
        with self.store.lock:
            return copy.deepcopy(self.store.get(repo_type, repo_id)["tags"])

    def pull_requests(self, repo_id: str, repo_type: str = "model") -> list[dict]:
        """PRs with num, title, description, status, base (branch), head (commit oid), ref, events."""
        with self.store.lock:
            return [{**copy.deepcopy(d), "ref": f"refs/pr/{d['num']}"}
                    for d in self.store.get(repo_type, repo_id)["discussions"] if d["isPullRequest"]]

    # ---- request handling -------------------------------------------------------------------------
    def _handle(self, method: str, raw_path: str, headers, body: bytes) -> tuple[int, dict, Any]:
        split = urlsplit(raw_path)
        path = unquote(split.path)
        endpoint, params = route(method, split.path)
        record = {"method": method, "path": path, "endpoint": endpoint, "query": parse_qs(split.query),
                  "headers": {k: "<redacted>" if k.lower() == "authorization" else v for k, v in headers.items()},
                  "role": None, "body_size": len(body), "json": _loggable_json(headers, body),
                  "status": None, "injected": False}
        with self._lock:
            self._requests.append(record)
        failure = self._take_failure(method, endpoint, path)
        if failure and failure.before_serving:
            failure.before_serving()
            failure = None
        if failure and not failure.after_serving:
            return self._injected(record, failure)
        status, resp_headers, payload = self._serve(method, path, endpoint, params, headers, body, record)
        return self._injected(record, failure) if failure else (status, resp_headers, payload)

    @staticmethod
    def _injected(record: dict, failure: _Failure) -> tuple[int, dict, Any]:
        status = RESET if failure.reset else failure.status
        record.update(injected=True, status=status)
        return status, failure.headers, failure.body or {"error": f"Injected failure (HTTP {failure.status})"}

    def _serve(self, method, path, endpoint, params, headers, body, record) -> tuple[int, dict, Any]:
        try:
            if endpoint is None:
                raise HubError(404, f"Not Found: {method} {path}")
            record["role"] = role = self._role(method, endpoint, headers)
            # validate-yaml is a POST that changes nothing, so a read token may call it.
            if method not in ("GET", "HEAD") and endpoint != "validate_yaml" and role != "write":
                raise HubError(403, "This token has read-only access; write access is required")
            base_url = f"http://{headers['Host']}" if headers.get("Host") else self.url
            req = Request(method, params, record["query"], headers, body, base_url, role)
            with self.store.lock:  # one consistent view per request; file bodies are sent after release
                status, resp_headers, payload = self.api.call(endpoint, req)
        except HubError as e:
            status, payload = e.status, {"error": e.message}
            resp_headers = {"X-Error-Message": ascii_header(e.message)}
            if e.code:
                resp_headers["X-Error-Code"] = e.code
        except (KeyError, TypeError, ValueError) as e:  # malformed client payloads (binascii.Error included)
            log.debug("bad request %s %s", method, path, exc_info=True)
            status, resp_headers, payload = 400, {}, {"error": f"Bad request: {e!r}"}
        except Exception as e:
            log.exception("local hub failed on %s %s", method, path)
            status, resp_headers, payload = 500, {}, {"error": f"Internal error: {e!r}"}
        record["status"] = status
        return status, resp_headers, payload

    def _role(self, method: str, endpoint: str, headers) -> str | None:
        if auth := headers.get("Authorization"):
            if (role := self.tokens.get(auth.removeprefix("Bearer ").strip())) is None:
                raise HubError(401, "Invalid credentials in Authorization header")
            return role
        if self.anonymous_read and method in ("GET", "HEAD") and endpoint != "whoami":
            return None
        raise HubError(401, "Authorization header is missing: a token is required")


def _loggable_json(headers, body: bytes) -> Any:
    """Parsed JSON / NDJSON body for the request log, with base64 file contents elided to keep it small."""
    kind = (headers.get("Content-Type") or "").lower()
    try:
        if "ndjson" in kind:
            items = [json.loads(line) for line in body.splitlines() if line.strip()]
            for item in items:
                if isinstance(item.get("value"), dict) and "content" in item["value"]:
                    item["value"]["content"] = f"<{len(item['value']['content'])} chars>"
            return items
        return json.loads(body) if "json" in kind and body else None
    except ValueError:
        return None


class _Handler(BaseHTTPRequestHandler):
    hub: LocalHub  # set on the per-hub subclass
    server_version = "LocalHub/1.0"
    # HTTP/1.0: one request per connection, so stop() never waits on idle keep-alive sockets.

    def _dispatch(self) -> None:
        try:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                body = b"".join(chunks)
            else:
                # Read the whole body even when refusing the request: closing on an unread body
                # makes the client see a connection reset instead of our error response.
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, payload = self.hub._handle(self.command, self.path, self.headers, body)
            if status == RESET:
                self.close_connection = True  # nothing written: the client sees the connection drop
                return
            data = payload if isinstance(payload, bytes) else json.dumps(payload, default=str).encode()
            self.send_response(status)
            headers = {"Content-Type": "application/json; charset=utf-8", **headers}
            headers.setdefault("X-Request-Id", self.headers.get("X-Amzn-Trace-Id") or str(uuid.uuid4()))
            for key, value in headers.items():
                self.send_header(key, str(value))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("client went away during %s %s", self.command, self.path)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch

    def log_message(self, format: str, *args) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.local_hub",
                                     description="Serve a local Hugging Face Hub look-alike on 127.0.0.1.")
    parser.add_argument("--root", required=True, help="folder holding the repos (created if missing)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", action="append", default=[], help="token with write access (repeatable)")
    parser.add_argument("--read-token", action="append", default=[], help="read-only token (repeatable)")
    parser.add_argument("--user", default="local-user", help="user name the tokens belong to")
    args = parser.parse_args(argv)
    if not args.token and not args.read_token:
        parser.error("give at least one --token or --read-token")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    tokens = {**{t: "read" for t in args.read_token}, **{t: "write" for t in args.token}}
    with LocalHub(args.root, tokens, port=args.port, user=args.user) as hub:
        print(hub.url, flush=True)  # the demo reads the URL from this first line
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
