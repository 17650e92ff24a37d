"""A caller of the app that speaks Gradio's raw HTTP protocol by hand (with httpx), as a browser or
gradio_client would, and the requests no client library sends: server paths, data URLs, queue floods,
oversized bodies, uploads dropped half-way. For tests/test_hostile.py, the soak test and `bench.hostile`."""

from __future__ import annotations

import base64
import itertools
import json
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from bear_classifier import page

FILE_DATA = {"_type": "gradio.FileData"}
_addresses = itertools.count()


def fresh_address() -> str:
    """A loopback address that no caller in this process has used yet: a client of its own, so its shares (joins,
    predictions, decoding time, uploads, flags) on any server start untouched, whatever other tests spent."""
    n = next(_addresses)
    return f"127.100.{n // 250}.{n % 250 + 1}"


@dataclass
class Outcome:
    """How a queued call ended: `data` (the outputs) when it succeeded, else Gradio's `error` text."""

    success: bool
    data: list[Any] | None = None
    error: str | None = None


class RawCaller:
    """One visitor (one Gradio session) speaking the protocol directly: upload, queue/join, queue/data, run."""

    def __init__(self, url: str, timeout: float = 180, source: str | None = None):
        """`source`: the loopback address to call from (127.0.0.2, ...), as distinct clients of a Space."""
        self.url = url.rstrip("/")
        self.source = source
        self.api = self.url + "/gradio_api"
        self.http = httpx.Client(timeout=timeout, transport=httpx.HTTPTransport(local_address=source))
        self.session = uuid.uuid4().hex
        config = self.http.get(self.url + "/config").raise_for_status().json()
        self.fn_index = {d["api_name"]: d["id"] for d in config["dependencies"]}

    def upload(self, *files: tuple[str, bytes]) -> httpx.Response:
        return self.http.post(self.api + "/upload", files=[("files", (name, content)) for name, content in files])

    def uploaded(self, name: str, content: bytes) -> dict[str, Any]:
        """A file uploaded the normal way, as the FileData a browser then sends."""
        path = self.upload((name, content)).raise_for_status().json()[0]
        return {"path": path, "orig_name": name, "meta": FILE_DATA}

    def join(self, data: list[Any], api_name: str = "predict") -> httpx.Response:
        body = {"data": data, "fn_index": self.fn_index[api_name], "session_hash": self.session}
        return self.http.post(self.api + "/queue/join", json=body)

    def predict(self, payload: Any) -> Outcome:
        """Queue one prediction with `payload` as the image and wait for its end."""
        joined = self.join([payload])
        if joined.status_code != 200:
            return Outcome(False, error=f"{joined.status_code} {joined.text}")
        event = joined.json()["event_id"]
        with self.http.stream("GET", self.api + "/queue/data", params={"session_hash": self.session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") == event and message.get("msg") == "process_completed":
                    output = message.get("output") or {}
                    return Outcome(bool(message.get("success")), output.get("data"), output.get("error"))
        return Outcome(False, error="stream closed before the answer")

    def flag(self, payload: Any, button: int = 0) -> httpx.Response:
        """Press the `button`-th "Wrong: ..." button with `payload` as the image (label/verdict/details left empty)."""
        name = "Flag" if button == 0 else f"Flag_{button}"
        body = {"data": [payload, None, None, None], "fn_index": self.fn_index[name], "session_hash": self.session}
        return self.http.post(self.api + f"/run/{name}", json=body)

    def flag_note(self, payload: Any, button: int = 0) -> str | None:
        """Press a "Wrong: ..." button: the note the page then shows under the buttons (None: no answer)."""
        data = self.flag(payload, button).json().get("data")
        return data[0] if data else None

    def flag_stored(self, payload: Any, button: int = 0) -> bool:
        """Press a "Wrong: ..." button: whether the note under the buttons says the flag was stored."""
        return self.flag_note(payload, button) == page.FLAG_STORED

    def close(self) -> None:
        self.http.close()


# What a hostile caller sends instead of an uploaded photo.
def server_path(path: str | Path) -> dict[str, Any]:
    """A FileData without "meta": Gradio then skips its "was it uploaded?" check."""
    return {"path": str(path)}


def data_url(content: bytes, mime: str = "image/png") -> dict[str, Any]:
    return {"path": None, "url": f"data:{mime};base64,{base64.b64encode(content).decode()}", "meta": FILE_DATA}


def flood_queue(
    url: str, joins: int, threads: int = 16, source: str | None = None, photos: list[bytes] | None = None
) -> dict[str, int]:
    """`joins` queue/join requests that never read their results; returns the count per answer: the HTTP
    status, and for a refusal the detail the server gave ("503 The classifier is busy...").

    Without `photos` each join carries no photo, and the server ends it at once. With `photos` (distinct bytes, so
    that no answer comes from the server's cache of answers), each is uploaded first and joined once: every event then
    costs a decode and a forward pass, so the queue fills faster than any number of workers can drain it."""
    callers = [RawCaller(url, source=source) for _ in range(threads)]
    try:
        payloads = [callers[i % threads].uploaded(f"{i}.png", photo) for i, photo in enumerate(photos or [])]

        def join(i: int) -> str:
            response = callers[i % threads].join([payloads[i % len(payloads)] if payloads else None])
            return (
                str(response.status_code)
                if response.is_success
                else f"{response.status_code} {response.json()['detail']}"
            )

        with ThreadPoolExecutor(threads) as pool:
            answers = list(pool.map(join, range(joins)))
    finally:
        for caller in callers:
            caller.close()
    return {answer: answers.count(answer) for answer in sorted(set(answers))}


def oversized_body(url: str, megabytes: int, chunked: bool = False) -> int:
    """A JSON body of `megabytes` to queue/join; with `chunked`, sent without Content-Length."""
    body = b'{"data": ["' + b"x" * (megabytes * 2**20) + b'"], "fn_index": 0, "session_hash": "a"}'
    content = iter([body[i : i + 2**20] for i in range(0, len(body), 2**20)]) if chunked else body
    try:
        response = httpx.post(
            url.rstrip("/") + "/gradio_api/queue/join",
            content=content,
            timeout=120,
            headers={"content-type": "application/json"},
        )
    except httpx.HTTPError:  # the server may close the connection while we are still sending: refused too
        return 413
    return response.status_code


def dropped_upload(url: str, megabytes: int = 5, source: str | None = None) -> None:
    """An upload that stops half-way and closes the connection."""
    import socket
    from urllib.parse import urlparse

    target = urlparse(url)
    head = (
        f"POST /gradio_api/upload HTTP/1.1\r\nHost: {target.hostname}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {megabytes * 2 * 2**20}\r\n\r\n"
        "--b\r\nContent-Disposition: form-data; name=files; filename=d.jpg\r\n\r\n"
    ).encode()
    with socket.create_connection((target.hostname, target.port), source_address=(source or "127.0.0.1", 0)) as s:
        try:
            s.sendall(head + b"x" * (megabytes * 2**20))
        except ConnectionError:  # refused (a share or the folder's cap) and closed before we stopped
            return
        time.sleep(0.5)


def held_upload(url: str, source: str, upload_id: str | None = None) -> socket.socket:
    """An upload that announces 100 KB and sends half: the request stays open until the socket closes."""
    target = urlparse(url)
    query = f"?upload_id={upload_id}" if upload_id else ""
    head = (
        f"POST /gradio_api/upload{query} HTTP/1.1\r\nHost: {target.hostname}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
        "--b\r\nContent-Disposition: form-data; name=files; filename=h.jpg\r\n\r\n"
    ).encode()
    held = socket.create_connection((target.hostname, target.port), source_address=(source, 0))
    held.sendall(head + b"x" * 50_000)
    return held
