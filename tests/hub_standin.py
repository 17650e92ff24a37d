"""A stand-in for the Hugging Face Hub endpoint, so the real huggingface_hub client code runs offline.

It is a plain `http.server.ThreadingHTTPServer` on 127.0.0.1 (port 0: the OS picks a free one) that implements
just enough of the Hub's HTTP API for `bear_classifier.ship.hub` and `bear_classifier.ship.deploy`, for model and Space repos:
repo creation, README front-matter validation, preupload, commit (NDJSON, additions and deletions), repo info and
file listing (`snapshot_download`, `list_repo_files`), Space variables, and `/resolve/` HEAD/GET for
`hf_hub_download`; and what `deploy` needs of accounts and Spaces: `whoami` with the account's plan, the Hub's plan rules
since July 2026 (a free account gets 402 Payment Required for a Gradio Space on cpu-basic and may host 2 ZeroGPU
Spaces), Space runtimes that move through scripted stages (BUILDING -> RUNNING, or BUILD_ERROR/RUNTIME_ERROR with
logs), hardware requests, secrets, volumes, Storage Buckets and private repos. The real Hub is never reached in tests.

Repos are keyed as the Hub's URLs name them: "owner/name" for a model, "spaces/owner/name" for a Space
("datasets/owner/name" for a dataset), so a model repo and a Space may share an id, as they do on the Hub.

Xet storage is kept out of the picture on purpose: preupload answers uploadMode "regular" for every file, so
the bytes travel inline (base64) in the commit payload, and downloads carry no X-Xet-* headers, so
`hf_hub_download` does a plain HTTP GET.

Every request is logged (`requests`), every commit recorded (`commits`) so tests can assert on what arrived;
anything else gets a 404 (and is logged too).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import yaml

_REPO = r"(?P<type>models|spaces|datasets)/(?P<repo>[^/]+/[^/]+)"
PREUPLOAD = re.compile(rf"^/api/{_REPO}/preupload/(?P<revision>[^/]+)$")
COMMIT = re.compile(rf"^/api/{_REPO}/commit/(?P<revision>[^/]+)$")
TREE = re.compile(rf"^/api/{_REPO}/tree/(?P<revision>[^/]+)(?:/(?P<path>.+))?$")
INFO = re.compile(rf"^/api/{_REPO}(?:/revision/(?P<revision>[^/]+))?$")
VARIABLES = re.compile(r"^/api/spaces/(?P<repo>[^/]+/[^/]+)/variables$")
SPACE_API = re.compile(
    r"^/api/spaces/(?P<repo>[^/]+/[^/]+)/(?P<what>runtime|hardware|secrets|volumes|logs/build|logs/run)$"
)
BUCKET = re.compile(r"^/api/buckets/(?P<bucket>[^/]+/[^/]+)$")
RESOLVE = re.compile(r"^/(?P<repo>(?:spaces/|datasets/)?[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)$")
# Every path the client may use against the stand-in; anything else is a bug in the code under test.
KNOWN_ROUTES = re.compile(
    r"^/(api/repos/create$|api/validate-yaml$|api/agent-harnesses$|"
    r"api/whoami-v2$|api/buckets/[^/]+/[^/]+$|"
    r"api/telemetry/|"  # huggingface_hub's send_telemetry (gradio_client calls it): a child process may not be muted
    r"api/(models|spaces|datasets)/[^/]+/[^/]+(/(preupload|commit|tree|revision)/.+|/variables)?$|"
    r"api/spaces/[^/]+/[^/]+/(runtime|hardware|secrets|volumes|logs/build|logs/run)$|"
    r"((spaces|datasets)/)?[^/]+/[^/]+/resolve/)"
)

# The Hub's documented limits on a Space's README front matter (https://huggingface.co/docs/hub/spaces-config-reference)
SPACE_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
SPACE_SDKS = {"gradio", "docker", "static", "streamlit"}
SHORT_DESCRIPTION_MAX = 60
FREE_ZERO_GPU_SPACES = 2  # hub-docs spaces-zerogpu: free personal accounts host up to 2 ZeroGPU Spaces
PAYMENT_REQUIRED = (
    "Static Spaces are free for everyone, but hosting Gradio and Docker Spaces on free cpu-basic requires a PRO "
    "subscription. Subscribe at https://huggingface.co/pro"
)  # the Hub's own words, as quoted in ed-donner/agents#1469


def repo_key(repo_type: str, repo_id: str) -> str:
    """ "owner/name" for a model, "spaces/owner/name" for a Space: the Hub's own URL prefixes."""
    return repo_id if repo_type in ("model", "models") else f"{repo_type.rstrip('s')}s/{repo_id}"


def front_matter_errors(content: str, repo_type: str) -> list[str]:
    """What the Hub's /api/validate-yaml refuses in a README's YAML header (for Spaces: the documented limits)."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.DOTALL)
    if not match:
        return []
    try:
        meta = yaml.safe_load(match[1]) or {}
    except yaml.YAMLError as e:
        return [f"Invalid YAML in README.md front matter: {e}"]
    if not isinstance(meta, dict):
        return ["README.md front matter must be a YAML mapping"]
    errors = []
    if repo_type == "space":
        short = meta.get("short_description")
        if short is not None and (not isinstance(short, str) or len(short) > SHORT_DESCRIPTION_MAX):
            errors.append(f'"short_description" length must be at most {SHORT_DESCRIPTION_MAX} characters long')
        for key in ("colorFrom", "colorTo"):
            if key in meta and meta[key] not in SPACE_COLORS:
                errors.append(f'"{key}" must be one of [{", ".join(sorted(SPACE_COLORS))}]')
        if "sdk" in meta and meta["sdk"] not in SPACE_SDKS:
            errors.append(f'"sdk" must be one of [{", ".join(sorted(SPACE_SDKS))}]')
    return errors


@dataclass
class Request:
    method: str
    path: str  # without the query string, percent-decoded
    headers: dict[str, str]  # names lower-cased (HTTP header names are case-insensitive)
    body: bytes
    query: str = ""


@dataclass
class Commit:
    repo_id: str
    revision: str  # the branch the client committed to
    message: str
    authorization: str | None
    files: dict[str, bytes]  # path in repo -> bytes, decoded from the NDJSON payload
    sha: str = ""
    repo_type: str = "model"
    deleted: list[str] = field(default_factory=list)  # paths the commit deleted


@dataclass
class HubStandIn:
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    commits: list[Commit] = field(default_factory=list)
    repos: set[str] = field(default_factory=set)  # repo keys (see `repo_key`)
    created: list[dict] = field(default_factory=list)  # the JSON payloads of /api/repos/create
    # repo key -> commit sha -> {path: bytes}; "branches" maps (repo key, branch) -> commit sha
    snapshots: dict[str, dict[str, dict[str, bytes]]] = field(default_factory=dict)
    branches: dict[tuple[str, str], str] = field(default_factory=dict)
    # Space repo id -> {key: {"value": ..., "description": ...}}
    variables: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    # The account a token belongs to (whoami-v2); a free one by default
    user: str = "bear-lab"
    pro: bool = False
    hardware: dict[str, str] = field(default_factory=dict)  # Space repo id -> requested hardware
    # Space repo id -> the stages its runtime reports, one per call (the last one stays), and its logs
    stages: dict[str, list[str]] = field(default_factory=dict)
    # Space repo id -> how many runtime calls after an upload still report the previous commit RUNNING (the Hub
    # keeps serving the old build until the new one starts); every runtime names the commit it runs ("sha")
    previous_runs: dict[str, int] = field(default_factory=dict)
    logs: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # Space -> "build"/"run" -> lines
    hosts: dict[str, str] = field(default_factory=dict)  # Space repo id -> the URL its app answers on
    secrets: dict[str, set[str]] = field(default_factory=dict)
    volumes: dict[str, list[dict]] = field(default_factory=dict)
    buckets: dict[str, bool] = field(default_factory=dict)  # bucket id -> private
    private: set[str] = field(default_factory=set)  # repo keys created or marked private

    def add_commit(
        self, repo_id: str, files: dict[str, bytes], branch: str = "main", deleted: Iterable[str] = ()
    ) -> str:
        """Record a commit of `files` (and deletions) on top of `branch` of repo key `repo_id`; returns its
        (made-up but deterministic) 40-hex SHA."""
        self.repos.add(repo_id)
        parent = self.branches.get((repo_id, branch), "")
        tree = dict(self.snapshots.get(repo_id, {}).get(parent, {}))
        deleted = sorted(deleted)
        for path in deleted:
            tree.pop(path, None)
        tree.update(files)
        digest = hashlib.sha1(parent.encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + files[path])
        for path in deleted:
            digest.update(b"-" + path.encode() + b"\0")
        sha = digest.hexdigest()
        self.snapshots.setdefault(repo_id, {})[sha] = tree
        self.branches[(repo_id, branch)] = sha
        return sha

    def resolve(self, repo_id: str, revision: str) -> str | None:
        if revision in self.snapshots.get(repo_id, {}):
            return revision
        return self.branches.get((repo_id, revision))

    def tree(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of repo key `repo_id` at `revision` (empty if none)."""
        return dict(self.snapshots.get(repo_id, {}).get(self.resolve(repo_id, revision) or "", {}))


def _handler(hub: HubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the Hub; every answer carries a Content-Length

        def log_message(self, *args) -> None:  # keep pytest output clean; `hub.requests` is the log
            pass

        def _record(self) -> Request:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            url = urlsplit(self.path)
            request = Request(self.command, unquote(url.path), headers, body, url.query)
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

        def _json(self, status: int, payload: dict | list, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(payload).encode(), headers)

        def _not_found(self, message: str = "Not found", head: bool = False, code: str = "EntryNotFound") -> None:
            # X-Error-Code tells huggingface_hub which error class to raise
            self._send(404, json.dumps({"error": message}).encode(), {"X-Error-Code": code}, head)

        def do_POST(self) -> None:
            request = self._record()
            if request.path == "/api/repos/create":
                self._create(request)
            elif request.path == "/api/validate-yaml":  # create_commit checks README.md's front matter first
                payload = json.loads(request.body)
                errors = front_matter_errors(payload.get("content", ""), payload.get("repoType") or "model")
                if errors:
                    self._json(400, {"error": "; ".join(errors)})
                else:
                    self._json(200, {"errors": [], "warnings": []})
            elif match := PREUPLOAD.match(request.path):
                files = json.loads(request.body)["files"]
                self._json(
                    200,
                    {
                        "files": [
                            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                            for f in files
                        ]
                    },
                )
            elif match := COMMIT.match(request.path):
                self._commit(request, match["type"], match["repo"], match["revision"])
            elif (match := SPACE_API.match(request.path)) and match["what"] == "hardware":
                flavor = json.loads(request.body)["flavor"]
                if not self._refuse_hardware(flavor, match["repo"]):
                    hub.hardware[match["repo"]] = flavor
                    self._json(200, self._runtime(match["repo"]))
            elif (match := SPACE_API.match(request.path)) and match["what"] == "secrets":
                hub.secrets.setdefault(match["repo"], set()).add(json.loads(request.body)["key"])
                self._send(200)
            elif match := BUCKET.match(request.path):
                if match["bucket"] in hub.buckets:
                    return self._json(
                        409, {"error": "You already created this bucket", "url": f"{hub.url}/buckets/{match['bucket']}"}
                    )
                item = json.loads(request.body or b"{}")
                hub.buckets[match["bucket"]] = bool(item.get("private")) or item.get("visibility") == "private"
                self._json(200, {"url": f"{hub.url}/buckets/{match['bucket']}", **self._bucket(match["bucket"])})
            elif match := VARIABLES.match(request.path):
                item = json.loads(request.body)
                variables = hub.variables.setdefault(match["repo"], {})
                variables[item["key"]] = {
                    "value": item["value"],
                    **({"description": item["description"]} if item.get("description") else {}),
                }
                self._json(200, variables)
            else:
                self._not_found()

        def _space_get(self, repo: str, what: str) -> None:
            if f"spaces/{repo}" not in hub.repos:
                return self._not_found(f"Repository spaces/{repo} not found", code="RepoNotFound")
            if what == "runtime":
                self._json(200, self._runtime(repo))
            elif what == "secrets":
                self._json(
                    200, {key: {"key": key, "updatedAt": "2026-12-01T00:00:00Z"} for key in hub.secrets.get(repo, ())}
                )
            elif what.startswith("logs/"):
                lines = hub.logs.get(repo, {}).get(what.removeprefix("logs/"), [])
                events = "".join(
                    f"data: {json.dumps({'data': line + chr(10), 'timestamp': '2026-01-01T00:00:00Z'})}\n\n"
                    for line in lines
                )
                self._send(200, events.encode(), {"Content-Type": "text/event-stream"})
            else:
                self._not_found()

        def _runtime(self, repo: str) -> dict:
            # Before the first upload the Space has no app; after it, each call moves one scripted stage on.
            uploads = [c.sha for c in hub.commits if c.repo_id == repo and c.repo_type == "space"]
            flavor = hub.hardware.get(repo)
            if hub.previous_runs.get(repo) and len(uploads) > 1:
                hub.previous_runs[repo] -= 1
                return {"stage": "RUNNING", "sha": uploads[-2], "hardware": {"current": flavor, "requested": flavor}}
            stages = hub.stages.get(repo) or ["RUNNING"]
            stage = "NO_APP_FILE" if not uploads else stages.pop(0) if len(stages) > 1 else stages[0]
            return {
                "stage": stage,
                "sha": uploads[-1] if uploads else None,
                "hardware": {"current": flavor if stage == "RUNNING" else None, "requested": flavor},
                "volumes": hub.volumes.get(repo),
            }

        def _bucket(self, bucket: str) -> dict:
            return {
                "id": bucket,
                "private": hub.buckets[bucket],
                "createdAt": "2026-12-01T00:00:00.000Z",
                "size": 0,
                "totalFiles": 0,
            }

        def _refuse_hardware(self, flavor: str | None, repo: str) -> bool:
            """The Hub's plan rules: 402 for cpu-basic (or no hardware) on a free account, ZeroGPU capped at 2."""
            if hub.pro:
                return False
            if flavor in (None, "cpu-basic"):
                self._json(402, {"error": PAYMENT_REQUIRED})
                return True
            others = [r for r, f in hub.hardware.items() if f == "zero-a10g" and r != repo]
            if flavor == "zero-a10g" and len(others) >= FREE_ZERO_GPU_SPACES:
                self._json(
                    403, {"error": f"You can host at most {FREE_ZERO_GPU_SPACES} ZeroGPU Spaces on a free account"}
                )
                return True
            return False

        def do_PUT(self) -> None:
            request = self._record()
            match = SPACE_API.match(request.path)
            if match and match["what"] == "volumes":
                hub.volumes[match["repo"]] = json.loads(request.body)["volumes"]
                self._send(200)
            else:
                self._not_found()

        def do_DELETE(self) -> None:
            request = self._record()
            if match := VARIABLES.match(request.path):
                variables = hub.variables.setdefault(match["repo"], {})
                variables.pop(json.loads(request.body)["key"], None)
                self._json(200, variables)
            else:
                self._not_found()

        def _create(self, request: Request) -> None:
            payload = json.loads(request.body)
            hub.created.append(payload)
            repo_id = "/".join(part for part in (payload.get("organization"), payload["name"]) if part)
            repo_type = payload.get("type") or "model"
            if repo_type == "space" and payload.get("sdk") not in SPACE_SDKS:
                return self._json(400, {"error": f"Invalid sdk {payload.get('sdk')!r}"})
            key = repo_key(repo_type, repo_id)
            url = f"{hub.url}/{key}"
            if key in hub.repos:  # what the Hub answers; create_repo(exist_ok=True) reads the url from it
                return self._json(409, {"error": "You already created this repo", "url": url})
            if repo_type == "space" and payload.get("sdk") in ("gradio", "docker"):
                if self._refuse_hardware(payload.get("hardware"), repo_id):
                    return None
                hub.hardware[repo_id] = payload.get("hardware") or "cpu-basic"
            if payload.get("private") or payload.get("visibility") == "private":
                hub.private.add(key)
            hub.repos.add(key)
            # The Hub's first commit of a new repo: .gitattributes (and, for a Space, a README stub)
            first = {".gitattributes": b"*.pkl filter=lfs diff=lfs merge=lfs -text\n"}
            if repo_type == "space":
                first["README.md"] = f"---\ntitle: {payload['name']}\nsdk: {payload['sdk']}\n---\n".encode()
            hub.add_commit(key, first)
            self._json(200, {"url": url, "name": repo_id})

        def _commit(self, request: Request, repo_type: str, repo_id: str, revision: str) -> None:
            message, files, deleted = "", {}, []
            for line in request.body.splitlines():
                item = json.loads(line)
                if item["key"] == "header":
                    message = item["value"]["summary"]
                elif item["key"] == "file" and item["value"].get("encoding") == "base64":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "deletedFile":
                    deleted.append(item["value"]["path"])
                else:  # lfsFile/deletedFolder/...: not something this project sends
                    self._json(400, {"error": f"stand-in does not support commit line {item['key']!r}"})
                    return
            key = repo_key(repo_type, repo_id)
            commit = Commit(
                repo_id,
                revision,
                message,
                request.headers.get("authorization"),
                files,
                repo_type=repo_type.rstrip("s"),
                deleted=deleted,
            )
            commit.sha = hub.add_commit(key, files, branch=revision, deleted=deleted)
            hub.commits.append(commit)
            self._json(200, {"commitUrl": f"{hub.url}/{key}/commit/{commit.sha}", "commitOid": commit.sha})

        def _tree(self, repo_type: str, repo_id: str, revision: str, path: str | None) -> None:
            key = repo_key(repo_type, repo_id)
            sha = hub.resolve(key, revision)
            if sha is None:
                return self._not_found(f"Revision {revision} not found", code="RevisionNotFound")
            prefix = f"{path.rstrip('/')}/" if path else ""
            entries = [
                {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                for name, data in sorted(hub.snapshots[key][sha].items())
                if name.startswith(prefix)
            ]
            self._json(200, entries)

        def _info(self, repo_type: str, repo_id: str, revision: str | None) -> None:
            key = repo_key(repo_type, repo_id)
            if key not in hub.repos:
                return self._not_found(f"Repository {key} not found", code="RepoNotFound")
            sha = hub.resolve(key, revision or "main")
            if sha is None:
                return self._not_found(f"Revision {revision} not found", code="RevisionNotFound")
            siblings = [{"rfilename": name} for name in sorted(hub.snapshots[key][sha])]
            info = {"id": repo_id, "sha": sha, "private": key in hub.private, "siblings": siblings}
            if repo_type == "spaces":
                info.update(host=hub.hosts.get(repo_id), runtime=self._runtime(repo_id))
            self._json(200, info)

        def _resolve(self, request: Request, head: bool) -> None:
            match = RESOLVE.match(request.path)
            if not match:
                return self._not_found(head=head)
            if match["repo"] in hub.private and not request.headers.get("authorization"):
                # The Hub hides a private repo from anonymous callers: 401 with RepoNotFound
                self._send(401, b'{"error": "Repository Not Found"}', {"X-Error-Code": "RepoNotFound"}, head)
                return None
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
            self._resolve(self._record(), head=True)

        def do_GET(self) -> None:
            # Besides these routes, huggingface_hub's user-agent code GETs /api/agent-harnesses (a best-effort
            # registry it caches for a day): it gets the 404 of any unknown path, which the client shrugs off.
            request = self._record()
            if request.path == "/api/whoami-v2":
                self._json(200, {"type": "user", "name": hub.user, "isPro": hub.pro, "orgs": []})
            elif match := SPACE_API.match(request.path):
                self._space_get(match["repo"], match["what"])
            elif match := BUCKET.match(request.path):
                if match["bucket"] not in hub.buckets:
                    return self._not_found(f"Bucket {match['bucket']} not found", code="RepoNotFound")
                self._json(200, self._bucket(match["bucket"]))
            elif match := TREE.match(request.path):
                self._tree(match["type"], match["repo"], match["revision"], match["path"])
            elif match := VARIABLES.match(request.path):
                self._json(200, hub.variables.get(match["repo"], {}))
            elif match := INFO.match(request.path):
                self._info(match["type"], match["repo"], match["revision"])
            else:
                self._resolve(request, head=False)

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


@contextlib.contextmanager
def pointed_at_standin(tmp_path, monkeypatch) -> Iterator[HubStandIn]:
    """The stand-in, with huggingface_hub pointed at it and at a throw-away cache (for pytest fixtures).

    huggingface_hub reads HF_ENDPOINT, HF_HOME, HF_HUB_CACHE... once, in `huggingface_hub.constants`, at import
    time, and it is already imported (bear_classifier.ship.hub imports it). So setting the env vars now is not enough:
    the code paths used here read the *module attributes* at call time, so those are what we patch:
    - `constants.ENDPOINT`: `HfApi()` copies it into `self.endpoint` when built, and hub/deploy build a new HfApi
      per call (create_repo, validate-yaml, preupload, commit, variables all use `self.endpoint`);
    - `constants.HUGGINGFACE_CO_URL_TEMPLATE`: `hf_hub_download` builds its /resolve/ URL from this template, which
      was formatted from ENDPOINT at import, so patching ENDPOINT alone would still download from huggingface.co;
    - `HF_HUB_CACHE` (download cache) and `HF_TOKEN_PATH`/`HF_STORED_TOKENS_PATH` (a token saved by `hf auth
      login` would otherwise be sent; tests that want a "logged-in" user write `HF_TOKEN_PATH`) and
      `AGENT_HARNESSES_PATH` (building the user-agent header fetches {ENDPOINT}/api/agent-harnesses once per
      process and caches it there), so nothing touches ~/.cache.
    (The module-level `huggingface_hub.hf_api.api = HfApi()` keeps the old endpoint, but our code doesn't use it.)
    The env vars are set as well, for anything that reads them at call time or in a child process.
    Xet: the stand-in never offers it (uploadMode "regular", no X-Xet-* headers); HF_HUB_DISABLE_XET makes sure
    (it also keeps `upload_folder` on its single-commit path).
    """
    from huggingface_hub import constants

    with running_standin() as server:
        home = tmp_path / "hf_home"
        settings = {
            "ENDPOINT": server.url,
            "HUGGINGFACE_CO_URL_TEMPLATE": server.url + "/{repo_id}/resolve/{revision}/{filename}",
            "HF_HOME": str(home),
            "HF_HUB_CACHE": str(home / "hub"),
            "HF_TOKEN_PATH": str(home / "token"),
            "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
            "AGENT_HARNESSES_PATH": str(home / ".agent_harnesses.json"),
            "HF_HUB_DISABLE_XET": True,
            "HF_HUB_OFFLINE": False,
            "HF_HUB_DISABLE_TELEMETRY": True,  # gradio_client's Client(...) would report to {ENDPOINT}/api/telemetry
        }
        for name, value in settings.items():
            monkeypatch.setattr(constants, name, value)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HOME", str(home))
        monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
        yield server
    # Whatever the test did, nothing may have gone anywhere but the known Hub routes (no Xet, no LFS batch).
    for request in server.requests:
        assert KNOWN_ROUTES.match(request.path), request
