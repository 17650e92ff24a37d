"""Photos are decoded in worker processes, each decode under a hard CPU-time and memory budget.

A decoder's cost is set by the file, not its size: 76 KB of crafted progressive JPEG kept one core busy for
55 s. Decoded on the inference thread (or under a lock), such a file stalled every visitor. Here each decode
runs in a worker process (`python -m bear_classifier.model.decoding`), which the kernel stops when it passes its
CPU budget (RLIMIT_CPU: SIGXCPU) and which cannot allocate beyond its memory budget (RLIMIT_AS): that photo
is refused with a message, the worker is replaced, and the other workers keep answering. A worker that could
not be started (out of file descriptors or memory) leaves a placeholder in the pool, started on next use: the
pool never shrinks. With `quotas`, each decode's CPU time is charged to its client, and a client past its share
(or whose photo was stopped at the budget) is refused for a while before any worker is used. A worker hands
back the photo already resized to what the network reads (a few hundred KB, not the 150 MB of a decoded
50 MP photo), so the server's own memory never holds a full-size photo; a worker that grew large retires.
Each client decodes one photo at a time, so one caller never holds more than one worker.

Costly photos cannot keep a visitor with ordinary photos waiting. Every address's first crafted photo is taken
(nothing tells it from an honest one before it is decoded), and eight of them at once held both workers at their
budget for 12 s (`python -m bench.hostile crowd`). So, with `quotas`, the pool keeps one more worker, the express
lane, for clients whose photos have decoded quickly (`EXPRESS_SECONDS`): there a photo that turns out heavier is
stopped early and goes on in the ordinary lane, and its client leaves the express lane. The ordinary workers run at
a lower CPU priority than the server, so the photos they burn do not slow its forward passes either.

Protocol on the worker's stdin/stdout: a JSON line per request; the answer is a JSON line, then the bytes
it announces.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from PIL import Image

from bear_classifier.model.images import ImageError, open_image

TOO_SLOW = "This photo takes too long to decode (over the server's budget): save it again as an ordinary JPEG or PNG."
NO_DECODER = "The server cannot start a decoder just now: please try again in a few seconds."
TOO_BIG = "This photo needs too much memory to decode: resize it or save it again as an ordinary JPEG or PNG."


class Shares(Protocol):
    """Each client's share of decoding CPU, as the pool charges it (`web.clients.Quotas`)."""

    def decode_refusal(self, client: str) -> str | None: ...

    def decode_spent(self, client: str) -> float: ...

    def charge_decode(self, client: str, cpu_seconds: float, over_budget: bool) -> None: ...


_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
RETIRE_MB = 400
"""A worker whose memory grew past this after a decode (allocators keep freed memory) exits and is replaced."""


class NotThePhoto(ImageError):
    """A refusal about the server or the client's share (no decoder free, decodes paused), not about the photo:
    an answer that must not be remembered by the photo's content."""


@dataclass(frozen=True)
class Decoded:
    """A photo decoded by a worker: one picture per requested size (the full picture when none was)."""

    pictures: tuple[Image.Image, ...]


@dataclass(frozen=True)
class Budget:
    cpu_seconds: float = 1.5
    """The 1,140 photos in ../shared/data take at most 0.06 s (99.9th percentile 0.035 s), the largest photo we
    take (a 50 MP progressive JPEG) 0.83 s on a busy machine (BENCHMARKS.md, `python -m bench.decode_cost`)."""
    memory_mb: int = 768
    """Above the worker's own footprint: a decoded 50 MP photo is 150 MB, resizing and converting add a copy or two."""


EXPRESS_SECONDS = 0.5
"""The express lane's CPU budget a photo: 8 times the slowest of the 1,140 photos in ../shared/data (0.06 s), and
room for a 12 MP phone photo. A client whose last photo took longer waits in the ordinary lane."""
EXPRESS_MEMORY = 65536
"""Clients the express lane remembers at once, the most recent ones (a few MB): a thousand addresses sending one
cheap photo each must not push the honest visitors out."""
ORDINARY_NICENESS = 10
"""The ordinary workers' niceness: under a storm of costly photos the server's own threads go first."""
MAX_NICENESS = 19
"""The kernel's lowest priority: a server already running nice keeps its workers at most there."""


class DecoderPool:
    """`workers` decoder processes; `sizes`: the (width, height) each photo is resized to (with `resample`),
    in the order the network's transforms read them; `draft_size`: see `images.open_image`. With `quotas`
    (clients to tell apart), one more worker: the express lane (module docstring)."""

    def __init__(
        self,
        workers: int = 2,
        budget: Budget = Budget(),
        sizes: list[tuple[int, int]] | None = None,
        resample: int = Image.Resampling.BILINEAR,
        draft_size: int | None = None,
        quotas: Shares | None = None,
        express_seconds: float = EXPRESS_SECONDS,
    ):
        self.budget = budget
        self.quotas = quotas
        self.options = {"sizes": sizes or [], "resample": int(resample), "draft_size": draft_size}
        self.express_seconds = min(express_seconds, budget.cpu_seconds)
        express_budget = Budget(self.express_seconds, budget.memory_mb)
        self._lanes = {ORDINARY: (budget, ORDINARY_NICENESS), EXPRESS: (express_budget, 0)}  # budget, niceness
        self._idle: dict[str, list[_Worker]] = {
            ORDINARY: [self._fresh(ORDINARY) for _ in range(workers)],
            EXPRESS: [self._fresh(EXPRESS)] if quotas else [],
        }
        self._turns = _Turns(workers, express=1 if quotas else 0)
        self._lock = threading.Lock()
        self._clients: dict[str, list[Any]] = {}  # client -> [its lock, threads using it]
        self._quick: OrderedDict[str, None] = OrderedDict()  # clients whose last photo decoded within EXPRESS_SECONDS

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
            for worker in itertools.chain(*self._idle.values()):
                worker.stop()
            for idle in self._idle.values():
                idle.clear()

    def _run(self, client: str, request: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        remember = "review_side" not in request  # a review copy (a "Wrong?" flag) says nothing of the next photo
        with self._turn(client):
            self._refuse_if_paused(client)
            try:
                with self._decoding(client, self.is_quick(client), remember) as worker:
                    return worker.ask(request)
            except _NotForExpress:
                self._refuse_if_paused(client)  # the express attempt's charge may have used up its share
                with self._decoding(client, False, remember) as worker:
                    return worker.ask(request)

    def _refuse_if_paused(self, client: str) -> None:
        if self.quotas and (refusal := self.quotas.decode_refusal(client)):
            raise NotThePhoto(refusal)  # its photos cost too much: no worker for this client for a while

    @contextmanager
    def _decoding(self, client: str, express: bool, remember: bool) -> Iterator[_Worker]:
        """A worker for one of `client`'s photos, its CPU time charged to the client afterwards; with `remember`,
        whether the photo decoded quickly decides the client's next lane."""
        spent = self.quotas.decode_spent(client) if self.quotas else 0.0
        with self._worker(spent, express) as worker:
            try:
                yield worker
            finally:
                stopped_early = worker.lane == EXPRESS and worker.over_budget
                if self.quotas:  # stopped in the express lane: not over its budget yet, it goes on in the other
                    over_budget = worker.over_budget and not stopped_early
                    self.quotas.charge_decode(client, worker.spent, over_budget=over_budget)
                if remember:
                    self._remember_speed(client, quick=worker.spent <= self.express_seconds and not worker.over_budget)
                if stopped_early:
                    raise _NotForExpress from None

    def is_quick(self, client: str) -> bool:
        """Whether `client`'s last photo decoded within the express lane's budget (its next one may use it)."""
        with self._lock:
            return bool(self.quotas) and client in self._quick

    def _remember_speed(self, client: str, quick: bool) -> None:
        with self._lock:
            self._quick.pop(client, None)
            if quick:
                self._quick[client] = None
                if len(self._quick) > EXPRESS_MEMORY:
                    self._quick.popitem(last=False)

    def _fresh(self, lane: str) -> _Worker:
        """A started worker, or where starting one fails (EMFILE, ENOMEM, EAGAIN) a placeholder that is started
        on next use: a fault never takes a worker out of the pool."""
        worker = _Worker(*self._lanes[lane], lane)
        try:
            worker.start()
        except OSError:
            pass
        return worker

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
    def _worker(self, spent: float, express: bool) -> Iterator[_Worker]:
        with self._turns.turn(spent, express) as lane:
            with self._lock:
                worker = self._idle[lane].pop()
            try:
                try:
                    worker.start()  # a placeholder starts now
                except OSError:  # EMFILE, ENOMEM, EAGAIN: the placeholder goes back, tried again next time
                    raise (_NotForExpress if lane == EXPRESS else NotThePhoto(NO_DECODER)) from None
                yield worker
            finally:
                if worker.started and not worker.alive():  # over budget, retired or crashed: replaced
                    worker.stop()
                    worker = self._fresh(lane)
                with self._lock:
                    self._idle[lane].append(worker)


ORDINARY, EXPRESS = "ordinary", "express"


class _NotForExpress(Exception):
    """A photo stopped at the express lane's budget, or an express worker that could not start: the photo goes on
    in the ordinary lane."""


class _Turns:
    """Free workers handed out to the waiting decodes whose clients have spent the least decoding time lately (then
    first come, first served): while addresses keep both workers at their budget, a visitor who sends one photo
    now and then waits for the next free worker, not behind every costly photo in line. A decode that may use the
    express lane takes its worker when that one is free, and an ordinary one otherwise."""

    def __init__(self, workers: int, express: int = 0):
        self._free = {ORDINARY: workers, EXPRESS: express}
        self._waiting: list[tuple[float, int, bool]] = []  # (client's CPU seconds lately, arrival, may use express)
        self._arrivals = itertools.count()
        self._changed = threading.Condition()

    @contextmanager
    def turn(self, spent: float, express: bool = False) -> Iterator[str]:
        """Wait for a worker; the lane it is in."""
        ticket = (spent, next(self._arrivals), express)
        with self._changed:
            self._waiting.append(ticket)
            while (lane := self._lane_for(ticket)) is None:
                self._changed.wait()
            self._waiting.remove(ticket)
            self._free[lane] -= 1
            self._changed.notify_all()  # the next in line may have a worker too
        try:
            yield lane
        finally:
            with self._changed:
                self._free[lane] += 1
                self._changed.notify_all()

    def _lane_for(self, ticket: tuple[float, int, bool]) -> str | None:
        """The lane whose free worker goes to `ticket` now, when the free workers go out in the waiting order."""
        free = dict(self._free)
        for waiting in sorted(self._waiting):
            lane = EXPRESS if waiting[2] and free[EXPRESS] else ORDINARY if free[ORDINARY] else None
            if waiting == ticket:
                return lane
            if lane:
                free[lane] -= 1
        return None


class _Worker:
    """A decoder process of `lane`, started on first use (`start`), at `niceness`."""

    def __init__(self, budget: Budget, niceness: int, lane: str):
        self.budget, self.niceness, self.lane = budget, niceness, lane
        self.process: subprocess.Popen | None = None
        self.retiring = False
        self.spent = 0.0
        """CPU seconds of the last request (the whole budget when it was stopped there)."""
        self.over_budget = False

    @property
    def started(self) -> bool:
        return self.process is not None

    def start(self) -> None:
        if self.process is not None:
            return
        # One thread each: the workers run beside the inference thread on a few cores.
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": _PACKAGE_ROOT}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                __name__,
                *map(str, (self.budget.cpu_seconds, self.budget.memory_mb)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        # Set from here, at once, so that the worker's own imports (Pillow's) yield to the server too: a worker
        # restarted after every budget kill spent them at the server's priority.
        try:
            own = os.getpriority(os.PRIO_PROCESS, 0)
            os.setpriority(os.PRIO_PROCESS, self.process.pid, min(MAX_NICENESS, own + self.niceness))
        except OSError:  # not lowered: not started (the pool puts a placeholder back, started on next use)
            self.stop()
            self.process = None
            raise

    def alive(self) -> bool:
        return self.process is not None and not self.retiring and self.process.poll() is None

    def ask(self, request: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        # The kernel enforces the CPU budget; this wall-clock limit only catches a worker that waits on
        # something instead of computing.
        backstop = threading.Timer(10 * self.budget.cpu_seconds + 10, self.process.kill)
        backstop.start()
        self.spent, self.over_budget = 0.0, False
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
            self.over_budget = self.process.returncode in (-signal.SIGKILL, -signal.SIGXCPU)
            self.spent = self.budget.cpu_seconds
            raise ImageError(TOO_SLOW if self.over_budget else TOO_BIG)
        self.retiring = header.get("retire", False)
        self.spent = header.get("cpu", 0.0)
        if header.get("error"):
            raise ImageError(header["error"])
        return header, payload

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None and not self.retiring:
            self.process.kill()
        self.process.wait()


# The worker process.
def _serve(cpu_seconds: float, memory_mb: int, requests: BinaryIO, answers: BinaryIO) -> None:
    # No core dumps: SIGXCPU's default action writes one (about 112 MB) wherever containers allow them.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Ctrl-C reaches the whole process group: the parent decides what stops (the worker ends when its stdin does).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ceiling = _status_kb("VmSize") * 1024 + memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
    watchdog = _Watchdog()
    for line in requests:
        start = time.process_time()
        # The kernel's limit counts the process's whole life, in whole seconds: a backstop a second or two past
        # this decode's budget (SIGXCPU ends the process), for a decoder that never lets the watchdog run.
        resource.setrlimit(resource.RLIMIT_CPU, (math.ceil(start + cpu_seconds) + 1, resource.RLIM_INFINITY))
        watchdog.arm(start + cpu_seconds)
        retire = False
        try:
            header, payload = _answer(json.loads(line))
        except ImageError as refusal:
            header, payload = {"error": str(refusal)}, b""
        except MemoryError:
            header, payload, retire = {"error": TOO_BIG}, b"", True
        watchdog.arm(None)
        retire = retire or _status_kb("VmRSS") > RETIRE_MB * 1024
        cpu = round(time.process_time() - start, 4)
        answers.write(
            json.dumps({**header, "bytes": len(payload), "retire": retire, "cpu": cpu}).encode() + b"\n" + payload
        )
        answers.flush()
        if retire:
            return


class _Watchdog:
    """Ends the worker (SIGKILL) once its CPU time passes the armed deadline: the budget to a hundredth of a
    second, where RLIMIT_CPU counts whole seconds. Pillow's C decoders release the GIL while they decode, and a
    pure-Python decoder yields it every few milliseconds, so this thread gets to look."""

    def __init__(self) -> None:
        self.deadline: float | None = None
        threading.Thread(target=self._watch, daemon=True).start()

    def arm(self, deadline: float | None) -> None:
        self.deadline = deadline

    def _watch(self) -> None:
        while True:
            time.sleep(0.01)
            if self.deadline is not None and time.process_time() > self.deadline:
                os.kill(os.getpid(), signal.SIGKILL)


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
    _serve(float(sys.argv[1]), int(sys.argv[2]), sys.stdin.buffer, sys.stdout.buffer)
