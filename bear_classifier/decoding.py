"""Photos are decoded in worker processes, each decode under a hard CPU-time and memory budget.

A decoder's cost is set by the file, not its size: 76 KB of crafted progressive JPEG kept one core busy for
55 s. Decoded on the inference thread (or under a lock), such a file stalled every visitor. Here each decode
runs in a worker process (`python -m bear_classifier.decoding`), which the kernel stops when it passes its
CPU budget (RLIMIT_CPU: SIGXCPU) and which cannot allocate beyond its memory budget (RLIMIT_AS): that photo
is refused with a message, the worker is replaced, and the other workers keep answering. A worker hands
back the photo already resized to what the network reads (a few hundred KB, not the 150 MB of a decoded
50 MP photo), so the server's own memory never holds a full-size photo; a worker that grew large retires.
Each client decodes one photo at a time, so one caller never holds more than one worker.

Protocol on the worker's stdin/stdout: a JSON line per request; the answer is a JSON line, then the bytes
it announces.
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from .images import ImageError, open_image

TOO_SLOW = "This photo takes too long to decode (over the server's budget): save it again as an ordinary JPEG or PNG."
TOO_BIG = "This photo needs too much memory to decode: resize it or save it again as an ordinary JPEG or PNG."
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
RETIRE_MB = 400
"""A worker whose memory grew past this after a decode (allocators keep freed memory) exits and is replaced."""


@dataclass(frozen=True)
class Decoded:
    """A photo decoded by a worker: one picture per requested size (the full picture when none was)."""

    pictures: tuple[Image.Image, ...]


@dataclass(frozen=True)
class Budget:
    cpu_seconds: int = 4
    """A 50 MP JPEG takes 0.5 s (baseline) to 0.75 s (progressive) of CPU here: 4 s leaves room for slower CPUs."""
    memory_mb: int = 768
    """Above the worker's own footprint: a decoded 50 MP photo is 150 MB, resizing and converting add a copy or two."""


class DecoderPool:
    """`workers` decoder processes; `sizes`: the (width, height) each photo is resized to (with `resample`),
    in the order the network's transforms read them; `draft_size`: see `images.open_image`."""

    def __init__(
        self,
        workers: int = 2,
        budget: Budget = Budget(),
        sizes: list[tuple[int, int]] | None = None,
        resample: int = Image.Resampling.BILINEAR,
        draft_size: int | None = None,
    ):
        self.budget = budget
        self.options = {"sizes": sizes or [], "resample": int(resample), "draft_size": draft_size}
        self._idle: list[_Worker] = [_Worker(budget) for _ in range(workers)]
        self._available = threading.Semaphore(workers)
        self._lock = threading.Lock()
        self._clients: dict[str, list[Any]] = {}  # client -> [its lock, threads using it]

    def decode(self, path: str, client: str = "") -> Decoded | ImageError:
        """The photo at `path`, resized to `sizes`; or the `ImageError` to answer with."""
        try:
            header, payload = self._run(client, {"path": path, **self.options})
        except ImageError as refusal:
            return refusal
        pictures, offset = [], 0
        for width, height in header["shapes"]:
            pictures.append(Image.frombytes("RGB", (width, height), payload[offset : offset + width * height * 3]))
            offset += width * height * 3
        return Decoded(tuple(pictures))

    def review_copy(self, path: str, side: int, client: str = "") -> bytes:
        """The photo at `path` re-encoded as a JPEG of at most `side` pixels a side, without its EXIF block
        (a phone photo's GPS position); `ImageError` when it cannot be decoded."""
        return self._run(client, {"path": path, "review_side": side, "draft_size": self.options["draft_size"]})[1]

    def close(self) -> None:
        with self._lock:
            for worker in self._idle:
                worker.stop()
            self._idle.clear()

    def _run(self, client: str, request: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        with self._turn(client), self._worker() as worker:
            return worker.ask(request)

    @contextmanager
    def _turn(self, client: str) -> Iterator[None]:
        """One decode at a time per client: its next photo waits, nobody else's does."""
        with self._lock:
            entry = self._clients.setdefault(client, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._lock:
                entry[1] -= 1
                if not entry[1]:
                    del self._clients[client]

    @contextmanager
    def _worker(self) -> Iterator[_Worker]:
        with self._available:
            with self._lock:
                worker = self._idle.pop()
            try:
                yield worker
            finally:
                if not worker.alive():  # over budget, retired or crashed: a fresh one takes its place
                    worker.stop()
                    worker = _Worker(self.budget)
                with self._lock:
                    self._idle.append(worker)


class _Worker:
    def __init__(self, budget: Budget):
        self.budget = budget
        # One thread each: the workers run beside the inference thread on a few cores.
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": _PACKAGE_ROOT}
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(budget.cpu_seconds), str(budget.memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )

        self.retiring = False

    def alive(self) -> bool:
        return not self.retiring and self.process.poll() is None

    def ask(self, request: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        # The kernel enforces the CPU budget; this wall-clock limit only catches a worker that waits on
        # something instead of computing.
        backstop = threading.Timer(10 * self.budget.cpu_seconds + 10, self.process.kill)
        backstop.start()
        try:
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
            header = json.loads(self.process.stdout.readline() or b"null")
            payload = self.process.stdout.read(header["bytes"]) if header else b""
        except (OSError, ValueError):
            header = None
        finally:
            backstop.cancel()
        if header is None:
            self.stop()
            raise ImageError(TOO_SLOW if self.process.returncode in (-9, -24) else TOO_BIG)
        self.retiring = header.get("retire", False)
        if header.get("error"):
            raise ImageError(header["error"])
        return header, payload

    def stop(self) -> None:
        if self.process.poll() is None and not self.retiring:
            self.process.kill()
        self.process.wait()


# The worker process.
def _serve(cpu_seconds: int, memory_mb: int, requests: BinaryIO, answers: BinaryIO) -> None:
    ceiling = _status_kb("VmSize") * 1024 + memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
    for line in requests:
        used = resource.getrusage(resource.RUSAGE_SELF)
        # The soft limit counts the process's whole life, in whole seconds: move it to this decode's budget
        # (between `cpu_seconds` - 1 and `cpu_seconds`). Past it the kernel sends SIGXCPU, which ends the process.
        resource.setrlimit(
            resource.RLIMIT_CPU, (int(used.ru_utime + used.ru_stime) + cpu_seconds, resource.RLIM_INFINITY)
        )
        retire = False
        try:
            header, payload = _answer(json.loads(line))
        except ImageError as refusal:
            header, payload = {"error": str(refusal)}, b""
        except MemoryError:
            header, payload, retire = {"error": TOO_BIG}, b"", True
        retire = retire or _status_kb("VmRSS") > RETIRE_MB * 1024
        answers.write(json.dumps({**header, "bytes": len(payload), "retire": retire}).encode() + b"\n" + payload)
        answers.flush()
        if retire:
            return


def review_jpeg(path: str, side: int, draft_size: int | None = None) -> bytes:
    """The photo at `path` as a JPEG of at most `side` pixels a side, without the EXIF block."""
    picture = open_image(path, draft_size=draft_size)
    picture.thumbnail((side, side))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=90)  # no exif= argument: location and camera data are dropped
    return buffer.getvalue()


def _answer(request: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    if "review_side" in request:
        return {}, review_jpeg(request["path"], request["review_side"], request.get("draft_size"))
    picture = open_image(request["path"], draft_size=request.get("draft_size"))
    resized = [picture.resize(tuple(size), request["resample"]) for size in request["sizes"]] or [picture]
    return {"shapes": [r.size for r in resized]}, b"".join(r.tobytes() for r in resized)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]), sys.stdin.buffer, sys.stdout.buffer)
