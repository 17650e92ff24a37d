"""What a caller may send to the app over HTTP, enforced before Gradio reads a byte of it.

Gradio reads a request body whole into memory and has no per-request cap except on uploaded files, lets one
upload request carry any number of files, fetches an `http(s)` path in a JSON payload from the web
(server-side), and serves many more routes than the page uses. `BodyLimits` is an ASGI middleware (pass it
to `launch(app_kwargs={"middleware": [...]})`):
- only the routes, methods and event ids that the page and the documented API use pass (`Routes`), each
  matched exactly and its JSON body parsed as Gradio parses it; everything else is 404/405, a body that does
  not parse 400/422 (never a 500);
- a body over its cap is refused with 413 (by Content-Length, or while it streams in without one); an
  upload that streams for longer than `uploads.UPLOAD_SECONDS` is cut off (408);
- an upload request must carry exactly one file (more than `MAX_UPLOAD_DELIMITERS` part delimiters are refused while
  they stream in, before Gradio's parser opens a file for each), the upload folder has a total cap, and whatever Gradio's
  parser wrote for a failed, cut-off or many-part request is deleted (`uploads.UploadFolder`);
- a JSON payload that names a web address as a file path is refused: photos arrive as uploads only;
- each client address has its share of queue joins and uploaded bytes a minute (`clients.Quotas`), of the
  upload folder (`uploads.UploadFolder`, which evicts), at most `AtOnce.queued_per_client` events in the queue, and at
  most `AtOnce.per_client` requests open at once (`AtOnce.total` for everyone): beyond it, 429 (503 for
  the total);
- `file=` serves only files in the upload folder (Gradio would fetch and relay any web address);
  `upload_progress` only an upload in flight (or just done) from the same client, whose signal Gradio keeps
  for good otherwise; `queue/data` only a session the queue knows (Gradio answers others with a traceback);
  `heartbeat/` only when the page uses it (`connect_heartbeat` in its config);
- "queue full" becomes a clear "busy, try again".
Calls of the queued endpoint around the queue (`/run/predict`) are Gradio's own `queue(api_open=False)`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from gradio.data_classes import CancelBody, PredictBody, ResetBody, SimplePredictBody
from pydantic import BaseModel, ValidationError
from python_multipart.multipart import parse_options_header
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect

from bear_classifier import page
from bear_classifier.web.clients import Quotas, address, of_request, wait
from bear_classifier.web.uploads import UPLOAD_SECONDS, UploadFolder

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_FILE_BYTES = 10 * 2**20
"""Largest upload (`launch(max_file_size=...)`): a phone photo is 2-8 MB."""
API_BODY_BYTES = 64 * 1024
"""A prediction or flag request is a few hundred bytes of JSON: the photo itself arrives through an upload."""
MULTIPART_OVERHEAD = 64 * 1024
MAX_UPLOAD_DELIMITERS = 4
"""Multipart delimiters an upload may carry: one before each part and one closing the body, so the photo and up to
two form fields the page never sends. Gradio's parser holds a temp file, and a file descriptor, for each file part
until the body ends, and allows 1,000 of them; refused at the next delimiter, at most this many parts are ever open."""
UPLOAD_FLOOR = 256 * 1024
"""What an upload costs of its client's upload share at least (bytes): a 16-byte upload leaves as much behind."""
PROGRESS_AFTER_S = 10
"""How long after its upload ends an upload's progress may still be read (the page opens it as it starts)."""
API = "/gradio_api"
FILE = API + "/file="
HEARTBEAT = API + "/heartbeat/"
PAGE_FILES = ("/assets/", "/static/", "/svelte/")
"""GET prefixes of the page's own files."""
PAGE_GETS = {
    "/",
    "/config",
    "/theme.css",
    "/favicon.ico",
    "/manifest.json",
    "/robots.txt",
    "/pwa_icon",
    API + "/info",
    API + "/theme.css",
    API + "/queue/data",
    API + "/upload_progress",
    API + "/startup-events",
}
"""GET routes the page and gradio_client read, exactly."""
EVENT_ID = re.compile(r"[0-9a-f]{32}")
"""A queued event's id as Gradio makes it (`uuid4().hex`)."""


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


class _TooManyParts(Exception):
    pass


class _Parts:
    """Counts a multipart body's delimiters as it streams in, across chunk edges. The boundary is read from the
    Content-Type header as Gradio's parser reads it (python-multipart's `parse_options_header`), so that no spelling
    of the header gives the two of them different boundaries."""

    def __init__(self, content_type: str | None):
        _, options = parse_options_header(content_type or "")
        boundary = options.get(b"boundary")
        self.delimiter = None if boundary is None else b"--" + boundary
        self.seen, self.tail = 0, b""

    def more_than(self, limit: int, chunk: bytes) -> bool:
        """Whether the body so far, `chunk` its newest part, holds more than `limit` delimiters."""
        if self.delimiter is None:
            return False  # no boundary: Gradio's parser refuses the body before it stores anything
        window = self.tail + chunk
        self.seen += window.count(self.delimiter)
        # A delimiter cut by the chunk's edge is counted with the next chunk; a tail one byte shorter than a
        # delimiter cannot hold one already counted.
        self.tail = window[-(len(self.delimiter) - 1) :]  # "--" and the boundary: never shorter than 2
        return self.seen > limit


@dataclass(frozen=True)
class Routes:
    """The app's events: fn_index -> api_name, those that run through the queue and those the page sends
    directly (examples, flag buttons)."""

    queued: dict[int, str]
    direct: dict[int, str]
    heartbeat: bool = False
    """Whether the page keeps a heartbeat stream open (Gradio's `connect_heartbeat`: state, unload or streams)."""

    @classmethod
    def of(cls, demo: Any) -> Routes:
        events = demo.fns.items()
        return cls(
            {i: str(fn.api_name) for i, fn in events if fn.queue},
            {i: str(fn.api_name) for i, fn in events if not fn.queue},
            bool(demo.config.get("connect_heartbeat")),
        )

    def post(self, path: str) -> tuple[str, type[BaseModel]] | None:
        """The kind of an allowed POST route and the body Gradio parses there; None for any other path."""
        names = set(self.queued.values()) | set(self.direct.values())
        exact: dict[str, tuple[str, type[BaseModel]]] = {
            API + "/upload": ("upload", BaseModel),
            API + "/queue/join": ("join", PredictBody),
            API + "/cancel": ("cancel", CancelBody),
            API + "/reset": ("reset", ResetBody),
            **{f"{API}/call/{name}": ("call", SimplePredictBody) for name in self.queued.values()},
            **{f"{API}/run/{name}": ("run", PredictBody) for name in names},
        }
        return exact.get(path)

    def get(self, path: str) -> bool:
        """Whether a GET may pass: the page's routes, and the answer stream of a REST call of a queued event
        (`/gradio_api/call/<api_name>/<event id>`, README "Call the API" with curl)."""
        if path in PAGE_GETS or path.startswith(PAGE_FILES) or path.startswith(FILE):
            return True
        if path.startswith(HEARTBEAT):
            return self.heartbeat
        call, _, event_id = path.rpartition("/")
        return (
            call in {f"{API}/call/{name}" for name in self.queued.values()} and EVENT_ID.fullmatch(event_id) is not None
        )

    def allows(self, kind: str, path: str, body: BaseModel) -> bool:
        """Whether the event this body names exists where it is sent: queue joins for queued events only,
        direct runs for any event of the app (Gradio's api_open=False refuses queued ones there)."""
        fn_index = getattr(body, "fn_index", None)
        if kind == "join":
            return fn_index in self.queued
        if kind == "run":
            return fn_index in self.queued or fn_index in self.direct if fn_index is not None else True
        return True


@dataclass(frozen=True)
class AtOnce:
    """What a client may have going at once: requests open (streams included), per client address and in all,
    and events in the queue (waiting or running)."""

    per_client: int = 8
    total: int = 256
    queued_per_client: int = 2
    """A visitor waits for one answer at a time: two leave room for a click while one is answered."""
    for_new_clients: int = 24
    """Events in the queue (waiting or running) of clients outside the decoders' express lane: the rest of the app's
    requests at once stay free for visitors whose photos decoded quickly, however many addresses send costly photos
    that stay within every share."""


def middleware(
    demo: Any,
    quotas: Quotas,
    uploads: UploadFolder,
    trust_forwarded: bool = False,
    max_file_bytes: int = MAX_FILE_BYTES,
    at_once: AtOnce = AtOnce(),
    quick: Callable[[str], bool] | None = None,
) -> Middleware:
    """The middleware entry for `launch(app_kwargs={"middleware": [...]})`; `trust_forwarded`: read the
    client's address from X-Forwarded-For (only behind a Space's proxy); `quick`: whether a client is in the
    decoders' express lane (`decoding.DecoderPool.is_quick`; None: no events are kept for such clients)."""
    return Middleware(
        BodyLimits,
        routes=Routes.of(demo),
        quotas=quotas,
        uploads=uploads,
        trust_forwarded=trust_forwarded,
        max_file_bytes=max_file_bytes,
        demo=demo,
        at_once=at_once,
        quick=quick,
    )


class BodyLimits:
    def __init__(
        self,
        app: ASGIApp,
        routes: Routes,
        quotas: Quotas,
        uploads: UploadFolder,
        trust_forwarded: bool,
        max_file_bytes: int,
        demo: Any,
        at_once: AtOnce,
        quick: Callable[[str], bool] | None,
    ):
        self.app = app
        self.routes = routes
        self.quotas = quotas
        self.uploads = uploads
        self.trust_forwarded = trust_forwarded
        self.upload_bytes = max_file_bytes + MULTIPART_OVERHEAD
        self.demo = demo
        self.at_once = at_once
        self.quick = quick
        self._open: Counter[str] = Counter()  # client -> its requests open now (all on the event loop: no lock)
        self._progress: dict[str, tuple[str, float]] = {}  # upload_id -> (client, until when it may be read)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        client = address(scope.get("client", (None,))[0], _headers(scope), self.trust_forwarded)
        if scope["method"] in ("GET", "HEAD") and scope["path"].startswith(PAGE_FILES):
            # The page's own files are not counted: a browser fetches a dozen at once while the page loads (429s
            # there left the page blank), and each is a file sent at once, never a stream that stays open.
            return await self._route(scope, receive, send, client)
        if self._open[client] >= self.at_once.per_client:
            return await _refuse(send, 429, page.OPEN_REQUESTS)
        if self._open.total() >= self.at_once.total:
            return await _refuse(send, 503, page.SERVER_OPEN)
        with self._opened(client):
            await self._route(scope, receive, send, client)

    @contextmanager
    def _opened(self, client: str) -> Iterator[None]:
        self._open[client] += 1
        try:
            yield
        finally:
            self._open[client] -= 1
            if not self._open[client]:
                del self._open[client]

    async def _route(self, scope: Scope, receive: Receive, send: Send, client: str) -> None:
        path = scope["path"]
        if len(path) > 1 and path.endswith("/") and not path.endswith("//"):
            path = path[:-1]  # Gradio registers most routes with and without the trailing slash
        if scope["method"] in ("GET", "HEAD"):
            if not self.routes.get(path):
                return await _refuse(send, 404, page.NOT_FOUND)
            if refusal := self._get_refusal(path, _query(scope), client):
                return await _refuse(send, 404, refusal)
            try:
                return await self.app(scope, receive, send)
            finally:
                if path == API + "/upload_progress":
                    self._forget_progress(_query(scope).get("upload_id", ""))
        route = self.routes.post(path) if scope["method"] == "POST" else None
        if route is None:
            if scope["method"] == "POST":
                return await _refuse(send, 404, page.NOT_FOUND)
            return await _refuse(send, 405, page.METHOD_NOT_ALLOWED)
        kind, model = route
        cap = self.upload_bytes if kind == "upload" else API_BODY_BYTES
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > cap):
            return await _too_large(send, cap)
        if kind == "upload":
            size = int(declared) if declared else cap  # without a length, a request may use the whole cap
            upload_id = _query(scope).get("upload_id", "")
            if len(upload_id) > 64:  # Gradio tracks the whole id for good: never let one be a memory sink
                return await _refuse(send, 400, page.LONG_UPLOAD_ID)
            if paused := self.quotas.decode_refusal(client):  # it could not use the photo: neither disk nor CPU
                return await _refuse(send, 429, paused)
            # Each upload costs at least UPLOAD_FLOOR: tiny uploads each leave Gradio state and a file behind.
            if not self.quotas.spend("upload_kb", client, max(size, UPLOAD_FLOOR) // 1024):
                return await _refuse(send, 429, wait("upload_kb"))
            with self.uploads.upload(client, size) as refusal:
                if refusal:
                    return await _refuse(send, 503 if refusal == page.UPLOADS_FULL else 429, refusal)
                self._prune_progress()
                if upload_id:
                    self._progress[upload_id] = (client, float("inf"))
                try:
                    return await self._upload(scope, receive, send, cap, client)
                finally:
                    if upload_id:
                        self._progress[upload_id] = (client, time.monotonic() + PROGRESS_AFTER_S)
        body = await _read(receive, cap)
        if body is None:
            return await _too_large(send, cap)
        try:
            payload = json.loads(body)
            parsed = model.model_validate(payload)
        except ValidationError:  # before ValueError, its base class
            return await _refuse(send, 422, page.not_what_it_takes(path))
        except (ValueError, RecursionError):  # not JSON, or nested beyond Python's recursion limit
            return await _refuse(send, 400, page.NOT_JSON)
        if not self.routes.allows(kind, path, parsed):
            return await _refuse(send, 404, page.NO_SUCH_EVENT)
        paths = _file_paths(payload)
        if any(_is_url(path.strip()) for path in paths):  # Gradio would download it
            return await _refuse(send, 400, page.URL_PATH)
        if kind in ("join", "call"):
            owners = self._event_clients()  # whose events are in the queue, waiting or running
            if owners.count(client) >= self.at_once.queued_per_client:
                return await _refuse(send, 429, page.QUEUED)
            if self.quick and not self.quick(client) and self._new_clients(owners) >= self.at_once.for_new_clients:
                return await _refuse(send, 503, page.BUSY)  # the other requests at once are kept for quick visitors
            if paused := self.quotas.decode_refusal(client):  # refused here, its events never wait in the queue
                return await _refuse(send, 429, paused)
            if not self.quotas.spend("join", client):
                return await _refuse(send, 429, wait("join"))
            for path in paths:  # a queued photo keeps its full lifetime, however long its turn takes
                self.uploads.used(path)
            send = _busy_message(send)
        await self.app(scope, _replay(body, receive), send)

    def _get_refusal(self, path: str, query: dict[str, str], client: str) -> str | None:
        """Why a GET of an allowed route is refused (404), or None."""
        if path.startswith(FILE):
            wanted = path[len(FILE) :]
            inside = not _is_url(wanted) and Path(wanted).resolve().is_relative_to(self.uploads.folder.resolve())
            return None if inside else page.NOT_FOUND
        if path == API + "/upload_progress":
            self._prune_progress()
            owner = self._progress.get(query.get("upload_id", ""))
            return None if owner and owner[0] == client else page.NO_UPLOAD
        if path == API + "/queue/data":
            known = query.get("session_hash", "") in self.demo._queue.pending_messages_per_session
            return None if known else page.UNKNOWN_SESSION
        return None

    def _prune_progress(self) -> None:
        """Forget the uploads whose progress may no longer be read, here and in Gradio (which keeps them for good
        when nobody reads them)."""
        now = time.monotonic()
        for upload_id in [i for i, (_, until) in self._progress.items() if until <= now]:
            del self._progress[upload_id]
            self._forget_progress(upload_id)

    def _forget_progress(self, upload_id: str) -> None:
        """Gradio keeps an `asyncio.Event` per upload_id ever asked for, for good: drop it once read."""
        from gradio.routes import file_upload_statuses

        file_upload_statuses.stop_tracking(upload_id)
        file_upload_statuses._signals.pop(upload_id, None)

    def _new_clients(self, owners: list[str]) -> int:
        """Of the events `owners` names, those of clients outside the express lane."""
        return sum(not self.quick(owner) for owner in owners)

    def _event_clients(self) -> list[str]:
        """The client of each event in the queue, waiting or running."""
        events = list(self.demo._queue.event_ids_to_events.values())
        return [of_request(event.request, self.trust_forwarded) for event in events]

    async def _upload(self, scope: Scope, receive: Receive, send: Send, cap: int, client: str) -> None:
        """AtOnce the upload to Gradio (counting bytes and time), then checks its answer: one file per request."""
        received, deadline = 0, time.monotonic() + UPLOAD_SECONDS
        parts = _Parts(_header(scope, b"content-type"))

        async def counted() -> Message:
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise _TooSlow from None
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > cap:
                raise _TooLarge
            if parts.more_than(MAX_UPLOAD_DELIMITERS, chunk):
                raise _TooManyParts
            return message

        answer: dict[str, Any] = {"body": b""}

        async def hold(message: Message) -> None:  # the answer is a short JSON list of paths: hold it
            if message["type"] == "http.response.start":
                answer["start"] = message
            else:
                answer["body"] += message.get("body", b"")

        try:
            await self.app(scope, counted, hold)
        except _TooLarge:
            return await _too_large(send, cap)
        except _TooSlow:
            return await _refuse(send, 408, page.upload_too_slow(UPLOAD_SECONDS))
        except _TooManyParts:
            return await _refuse(send, 400, page.ONE_IMAGE)
        except ClientDisconnect:  # the caller went away mid-upload: nobody to answer; the leftovers go with `upload()`
            return
        except OSError as error:  # a reset connection, or the disk: answered in words (it was a bare 500)
            print(f"upload not kept: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
            return await _refuse(send, 503, page.UPLOAD_NOT_KEPT)
        start = answer.get("start")
        if start and start["status"] == 200:
            paths = json.loads(answer["body"] or b"[]")
            if len(paths) != 1:
                _delete(paths)
                return await _refuse(send, 400, page.ONE_IMAGE)
            self.uploads.add(client, paths[0])
        await send(start or {"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": answer["body"]})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def _query(scope: Scope) -> dict[str, str]:
    # The last value of a repeated name, as Starlette (and so Gradio) reads it: the checks see what Gradio uses.
    return {name: values[-1] for name, values in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}


def _is_url(path: str) -> bool:
    return "://" in path or path.lower().startswith(("http:", "https:", "//", "data:"))


def _headers(scope: Scope) -> list[tuple[str, str]]:
    return [(key.decode("latin-1"), value.decode("latin-1")) for key, value in scope.get("headers", [])]


async def _read(receive: Receive, cap: int) -> bytes | None:
    """The whole body, or None once it passes `cap` (a body without Content-Length can still be endless)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as Starlette expects

    return replay


def _file_paths(payload: Any) -> list[str]:
    """Every file `path` a JSON payload names."""
    paths, stack = [], [payload]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(path := item.get("path"), str):
                paths.append(path)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return paths


def _busy_message(send: Send) -> Send:
    """Gradio answers a full queue with 503 'Queue is full. Max size is ...': say what to do instead."""
    busy = False

    async def send_busy(message: Message) -> None:
        nonlocal busy
        if message["type"] == "http.response.start" and message["status"] == 503:
            busy = True
            body = json.dumps({"detail": page.BUSY}).encode()
            headers = [
                (k, v)
                for k, v in message.get("headers", [])
                if k.lower() not in (b"content-length", b"content-encoding")
            ]
            await send(
                {**message, "headers": [*headers, (b"content-length", str(len(body)).encode()), (b"retry-after", b"5")]}
            )
            await send({"type": "http.response.body", "body": body})
        elif not busy:
            await send(message)

    return send_busy


def _delete(paths: list[Any]) -> None:
    for path in paths:
        if isinstance(path, str):
            try:
                os.remove(path)
            except OSError:
                pass


async def _too_large(send: Send, cap: int) -> None:
    await _refuse(send, 413, page.too_large(cap))


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
