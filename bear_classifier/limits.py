"""What a caller may send to the app over HTTP, enforced before Gradio reads a byte of it.

Gradio reads a request body whole into memory and has no per-request cap except on uploaded files, lets one
upload request carry any number of files, and fetches an `http(s)` path in a JSON payload from the web
(server-side). `BodyLimits` is an ASGI middleware (pass it to `launch(app_kwargs={"middleware": [...]})`):
- a body over its cap is refused with 413 (by Content-Length, or while it streams in without one);
- an upload request must carry exactly one file;
- a JSON payload that names a web address as a file path is refused: photos arrive as uploads only;
- the queued endpoint cannot be called around the queue (Gradio serves `/run/predict` too);
- "queue full" becomes a clear "busy, try again".
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.middleware import Middleware

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
BUSY = "The classifier is busy: please try again in a few seconds."
URL_PATH = "Send the photo as an uploaded file: web addresses are not fetched."
AROUND_THE_QUEUE = "Call this endpoint through the queue (gradio_client, or POST /gradio_api/call/{name})."


class _TooLarge(Exception):
    pass


def middleware(queued: dict[int, str], max_file_bytes: int = MAX_FILE_BYTES) -> Middleware:
    """The middleware entry for `launch(app_kwargs={"middleware": [...]})`; `queued`: fn_index -> api_name of
    the app's queued events (`queued_events(demo)`)."""
    return Middleware(BodyLimits, max_file_bytes=max_file_bytes, queued=queued)


def queued_events(demo: Any) -> dict[int, str]:
    """fn_index -> api_name of every event of `demo` that runs through the queue."""
    return {fn_id: str(fn.api_name) for fn_id, fn in demo.fns.items() if fn.queue}


class BodyLimits:
    def __init__(self, app: ASGIApp, max_file_bytes: int, queued: dict[int, str]):
        self.app = app
        self.upload_bytes = max_file_bytes + MULTIPART_OVERHEAD
        self.queued = queued

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        path = scope["path"].rstrip("/")
        upload = path.endswith("/upload")
        cap = self.upload_bytes if upload else API_BODY_BYTES
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > cap):
            return await _too_large(send, cap)
        if upload:
            return await self._upload(scope, receive, send, cap)
        body = await _read(receive, cap)
        if body is None:
            return await _too_large(send, cap)
        if _names_a_web_path(body):
            return await _refuse(send, 400, URL_PATH)
        if name := self._around_the_queue(path, body):
            return await _refuse(send, 403, AROUND_THE_QUEUE.format(name=name))
        replay = _replay(body, receive)
        if path.endswith("/queue/join"):
            send = _busy_message(send)
        await self.app(scope, replay, send)

    async def _upload(self, scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        """Streams the upload to Gradio (counting bytes), then checks its answer: one file per request."""
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > cap:
                raise _TooLarge
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
        start = answer.get("start")
        if start and start["status"] == 200:
            paths = json.loads(answer["body"] or b"[]")
            if len(paths) != 1:
                _delete(paths)
                return await _refuse(send, 400, "Upload one image per request.")
        await send(start or {"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": answer["body"]})

    def _around_the_queue(self, path: str, body: bytes) -> str | None:
        """The api_name of a queued event that this direct call (`/run/...`, `/api/...`) targets, if any.
        Gradio's page sends its own unqueued events (examples, flag buttons) to /run/predict with a
        `fn_index`, so the target is the body's fn_index when given, else the path's api_name."""
        route, _, name = path.removeprefix("/gradio_api/").partition("/")
        if route not in ("run", "api"):
            return None
        try:
            fn_index = json.loads(body).get("fn_index")
        except (ValueError, AttributeError):
            fn_index = None
        if fn_index is not None:
            return self.queued.get(fn_index) if isinstance(fn_index, int) else None
        return name if name in self.queued.values() else None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


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


def _names_a_web_path(body: bytes) -> bool:
    """Whether a JSON payload holds a file whose `path` is a web address (Gradio would download it)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return False  # not JSON: Gradio refuses it on its own
    stack = [payload]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            path = item.get("path")
            if isinstance(path, str) and path.strip().lower().startswith(("http:", "https:", "//", "data:")):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _busy_message(send: Send) -> Send:
    """Gradio answers a full queue with 503 'Queue is full. Max size is ...': say what to do instead."""
    busy = False

    async def send_busy(message: Message) -> None:
        nonlocal busy
        if message["type"] == "http.response.start" and message["status"] == 503:
            busy = True
            body = json.dumps({"detail": BUSY}).encode()
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
    await _refuse(send, 413, f"Request body over {cap // 1024} KB.")


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
