"""A stand-in for the Hugging Face Hub endpoint, so the real huggingface_hub client code runs offline.

It is a plain `http.server.ThreadingHTTPServer` on 127.0.0.1 (port 0: the OS picks a free one) that implements
just enough of the Hub's HTTP API for `bear_classifier.hub`: repo creation, preupload, commit (NDJSON) and
`/resolve/` HEAD/GET for `hf_hub_download`. The real Hub is never reached in tests.

Xet storage is kept out of the picture on purpose: preupload answers uploadMode "regular" for every file, so
the bytes travel inline (base64) in the commit payload, and downloads carry no X-Xet-* headers, so
`hf_hub_download` does a plain HTTP GET.

Every request is logged (`requests`), every commit recorded (`commits`) so tests can assert on what arrived;
anything else gets a 404 (and is logged too).
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

PREUPLOAD = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/preupload/(?P<revision>[^/]+)$")
COMMIT = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/commit/(?P<revision>[^/]+)$")
RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)$")


@dataclass
class Request:
    method: str
    path: str  # without the query string, percent-decoded
    headers: dict[str, str]  # names lower-cased (HTTP header names are case-insensitive)
    body: bytes


@dataclass
class Commit:
    repo_id: str
    revision: str  # the branch the client committed to
    message: str
    authorization: str | None
    files: dict[str, bytes]  # path in repo -> bytes, decoded from the NDJSON payload
    sha: str = ""


@dataclass
class HubStandIn:
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    commits: list[Commit] = field(default_factory=list)
    repos: set[str] = field(default_factory=set)
    # repo id -> commit sha -> {path: bytes}; "branches" maps (repo id, branch) -> commit sha
    snapshots: dict[str, dict[str, dict[str, bytes]]] = field(default_factory=dict)
    branches: dict[tuple[str, str], str] = field(default_factory=dict)

    def add_commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Record a commit of `files` on top of `branch`; returns its (made-up but deterministic) 40-hex SHA."""
        self.repos.add(repo_id)
        parent = self.branches.get((repo_id, branch), "")
        tree = dict(self.snapshots.get(repo_id, {}).get(parent, {}))
        tree.update(files)
        digest = hashlib.sha1(parent.encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + files[path])
        sha = digest.hexdigest()
        self.snapshots.setdefault(repo_id, {})[sha] = tree
        self.branches[(repo_id, branch)] = sha
        return sha

    def resolve(self, repo_id: str, revision: str) -> str | None:
        if revision in self.snapshots.get(repo_id, {}):
            return revision
        return self.branches.get((repo_id, revision))


def _handler(hub: HubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the Hub; every answer carries a Content-Length

        def log_message(self, *args) -> None:  # keep pytest output clean; `hub.requests` is the log
            pass

        def _record(self) -> Request:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            request = Request(self.command, unquote(urlsplit(self.path).path), headers, body)
            hub.requests.append(request)
            return request

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False):
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(payload).encode(), headers)

        def _not_found(self, message: str = "Not found", head: bool = False) -> None:
            # X-Error-Code tells huggingface_hub which error class to raise
            self._send(404, json.dumps({"error": message}).encode(), {"X-Error-Code": "EntryNotFound"}, head)

        def do_POST(self) -> None:
            request = self._record()
            if request.path == "/api/repos/create":
                payload = json.loads(request.body)
                repo_id = "/".join(part for part in (payload.get("organization"), payload["name"]) if part)
                hub.repos.add(repo_id)
                self._json(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})
            elif request.path == "/api/validate-yaml":  # create_commit checks README.md's front matter first
                self._json(200, {"errors": [], "warnings": []})
            elif match := PREUPLOAD.match(request.path):
                files = json.loads(request.body)["files"]
                self._json(200, {"files": [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in files
                ]})
            elif match := COMMIT.match(request.path):
                self._commit(request, match["repo"], match["revision"])
            else:
                self._not_found()

        def _commit(self, request: Request, repo_id: str, revision: str) -> None:
            message, files = "", {}
            for line in request.body.splitlines():
                item = json.loads(line)
                if item["key"] == "header":
                    message = item["value"]["summary"]
                elif item["key"] == "file" and item["value"].get("encoding") == "base64":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                else:  # lfsFile/deletedFile/...: not something this project sends
                    self._json(400, {"error": f"stand-in does not support commit line {item['key']!r}"})
                    return
            commit = Commit(repo_id, revision, message, request.headers.get("authorization"), files)
            commit.sha = hub.add_commit(repo_id, files, branch=revision)
            hub.commits.append(commit)
            self._json(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{commit.sha}", "commitOid": commit.sha})

        def _resolve(self, head: bool) -> None:
            request = self._record()
            match = RESOLVE.match(request.path)
            if not match:
                return self._not_found(head=head)
            sha = hub.resolve(match["repo"], match["revision"])
            data = hub.snapshots.get(match["repo"], {}).get(sha or "", {}).get(match["filename"])
            if data is None:
                return self._not_found(f"{match['filename']} not found at {match['revision']}", head=head)
            headers = {
                "Content-Type": "application/octet-stream",
                "ETag": f'"{hashlib.sha256(data).hexdigest()}"',  # becomes the blob's name in the cache
                "X-Repo-Commit": sha,  # hf_hub_download refuses a response without it
            }
            self._send(200, data, headers, head=head)

        def do_HEAD(self) -> None:
            self._resolve(head=True)

        def do_GET(self) -> None:
            # Besides /resolve/, huggingface_hub's user-agent code GETs /api/agent-harnesses (a best-effort
            # registry it caches for a day): it gets the 404 of any unknown path, which the client shrugs off.
            self._resolve(head=False)

    return Handler


class running_standin:
    """Context manager: a `HubStandIn` served from a background thread on 127.0.0.1."""

    def __enter__(self) -> HubStandIn:
        self.hub = HubStandIn()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.hub))
        self.server.daemon_threads = True
        self.hub.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        return self.hub

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
