"""Many callers at once, a share of them hostile: concurrent `gradio_client` callers with good photos and bad
uploads, and raw protocol requests (`rawcaller`): hostile payloads, and issue 17's routes, fn_index spellings,
nested JSON, orphan-making uploads, rejoins and flags from new sessions.

`run` checks that every good request got the right label, every bad one a clear error, none was lost, and
records the server's memory. The test suite runs it short (tests/test_load.py); `python -m bench.soak` runs
the long version (BENCHMARKS.md).
"""

from __future__ import annotations

import random
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from gradio_client import handle_file

from bear_classifier.settings import EXAMPLES_DIR, ROOT
from tests.support import hard_inputs, rawcaller
from tests.support.appserver import AppServer, CallerClients

GOOD = {"black": "black_bear.jpg", "grizzly": "grizzly_bear.jpg", "teddy": "teddy_bear.jpg"}


@dataclass
class SoakResult:
    requests: int
    seconds: float
    wrong: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)  # server memory after each tenth of the run

    @property
    def rss_growth_mb(self) -> float:
        """Median memory of the last three tenths minus that of the first three. Medians, because
        the allocator's footprint jumps up and down by tens of MB with the batch sizes that
        happen to arrive; a leak moves the whole curve."""
        return statistics.median(self.rss_mb[-3:]) - statistics.median(self.rss_mb[:3])


def bad_files(folder: Path) -> list[Path]:
    """Bad uploads, among them the files whose decoders raise odd errors or spin (`hard_inputs`)."""
    samples = {
        "text.jpg": b"not an image",
        "cut.jpg": hard_inputs.truncated_jpeg(),
        "bomb.png": hard_inputs.decompression_bomb(),
        "scans.jpg": hard_inputs.many_scans_jpeg(2000, 1500, scans=200),  # refused before decoding (issue 17)
        **hard_inputs.corrupt_decoder_files(),
    }
    for name, content in samples.items():
        (folder / name).write_bytes(content)
    return [folder / name for name in samples]


# Requests no client library would send, spoken in the raw protocol: each must be refused (an answer with
# an error, or a failed request of its own) and must never spoil anybody else's.
RAW_ATTACKS = {
    "server file without meta": lambda: rawcaller.server_path("/etc/passwd"),
    "path outside the uploads": lambda: {"path": str(ROOT / "app.py"), "meta": rawcaller.FILE_DATA},
    "data URL": lambda: rawcaller.data_url(hard_inputs.huge_png(3000)),
    "string instead of a file": lambda: "just a string",
}

WEB_PHOTO = {"path": "https://example.com/b.jpg", "meta": rawcaller.FILE_DATA}


def _expect(response: httpx.Response, statuses: set[int]) -> str | None:
    return None if response.status_code in statuses else f"HTTP {response.status_code} {response.text[:200]}"


def _extra_part(caller: rawcaller.RawCaller) -> str | None:
    files = [("files", ("a.jpg", (EXAMPLES_DIR / "teddy_bear.jpg").read_bytes())), ("other", ("b", b"x" * 2**20))]
    return _expect(caller.http.post(caller.api + "/upload", files=files), {200, 400})


def _chunked_over_cap(caller: rawcaller.RawCaller) -> str | None:
    head = b"--b\r\nContent-Disposition: form-data; name=files; filename=c.jpg\r\n\r\n"
    response = caller.http.post(
        caller.api + "/upload",
        content=iter([head] + [b"x" * 2**20] * 12),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    return _expect(response, {413})


def _dropped(caller: rawcaller.RawCaller) -> None:
    rawcaller.dropped_upload(caller.url, megabytes=2)


def _rejoin(caller: rawcaller.RawCaller) -> str | None:
    if not hasattr(caller, "photo"):
        caller.photo = caller.uploaded("t.jpg", (EXAMPLES_DIR / "teddy_bear.jpg").read_bytes())
    caller.session = uuid.uuid4().hex  # a fresh session hash, its result never read
    return _expect(caller.join([caller.photo]), {200, 503})


def _flag_unanswered(caller: rawcaller.RawCaller) -> str | None:
    caller.session = uuid.uuid4().hex
    photo = caller.uploaded("t.jpg", (EXAMPLES_DIR / "teddy_bear.jpg").read_bytes() + caller.session.encode())
    return f"stored a flag for a photo never answered: {photo}" if caller.flag_stored(photo) else None


# Issue 17's requests around the prediction itself: each must get the refusal named here.
RAW_REQUESTS = {
    "POST /run/upload (not an allowed route)": lambda c: _expect(
        c.http.post(c.api + "/run/upload", json={"data": [WEB_PHOTO], "session_hash": c.session}), {404}
    ),
    'fn_index "0" around the queue': lambda c: _expect(
        c.http.post(c.api + "/run/predict", json={"data": [None], "fn_index": "0", "session_hash": "s"}), {404}
    ),
    "fn_index 0.0 around the queue": lambda c: _expect(
        c.http.post(c.api + "/run/predict", json={"data": [None], "fn_index": 0.0, "session_hash": "s"}), {404}
    ),
    "30,000 nested [": lambda c: _expect(
        c.http.post(c.api + "/queue/join", content=b"[" * 30_000, headers={"content-type": "application/json"}), {400}
    ),
    "an extra multipart part": _extra_part,
    "a chunked upload over the cap": _chunked_over_cap,
    "a dropped upload": _dropped,
    "a rejoin under a fresh session hash": _rejoin,
    "a flag from a new session, nothing answered": _flag_unanswered,
}


def run(
    server: AppServer, requests: int, callers: int, bad_share: float = 0.1, warmup: int = 200, seed: int = 0
) -> SoakResult:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        bad = bad_files(Path(tmp)) + list(RAW_ATTACKS) + list(RAW_REQUESTS)
        plan = [
            (None, rng.choice(bad)) if rng.random() < bad_share else (label, EXAMPLES_DIR / name)
            for label, name in (rng.choice(list(GOOD.items())) for _ in range(requests))
        ]
        client = CallerClients(server.url)
        raw = threading.local()
        result = SoakResult(requests, 0.0)

        def attack(name: str) -> None:
            if not hasattr(raw, "caller"):
                raw.caller = rawcaller.RawCaller(server.url)
            if name in RAW_REQUESTS:
                try:
                    problem = RAW_REQUESTS[name](raw.caller)
                except httpx.HTTPError as e:  # the server may close the connection on a refused upload
                    problem = None if "upload" in name else repr(e)
                if problem:
                    result.wrong.append(f"{name}: {problem}")
                return
            outcome = raw.caller.predict(RAW_ATTACKS[name]())
            if outcome.success and not outcome.data[2].get("error"):
                result.wrong.append(f"{name}: answered {outcome.data[2]}")

        def one(item: tuple[str | None, Path | str]) -> None:
            expected, path = item
            if isinstance(path, str):
                return attack(path)
            try:
                _, _, details = client.predict(handle_file(str(path)), api_name="/predict")
            except Exception as e:  # a request that failed outright is lost
                result.lost.append(f"{path.name}: {e!r}")  # repr: some (CancelledError) have no message
                return
            if expected is None and not details.get("error"):
                result.wrong.append(f"{path.name}: no error reported")
            elif expected is not None and details.get("label") != expected:
                result.wrong.append(f"{path.name}: got {details}")

        start = time.perf_counter()
        tenth = max(1, requests // 10)
        with ThreadPoolExecutor(max_workers=callers) as pool:
            # Warm-up, answers checked too: memory climbs for the first few hundred requests while
            # the allocator settles (see BENCHMARKS.md), so we start watching it after that.
            list(pool.map(one, [item for item in plan if item[0]][:warmup]))
            for i in range(0, requests, tenth):
                list(pool.map(one, plan[i : i + tenth]))
                result.rss_mb.append(server.rss_mb())
        result.seconds = time.perf_counter() - start
        for _ in range(20):  # no temp file outlives its upload request (dropped ones end when the server notices)
            leftovers = (
                [p.name for p in server.upload_dir.iterdir() if p.is_file()] if server.upload_dir.is_dir() else []
            )
            if not leftovers:
                break
            time.sleep(0.5)
        result.wrong.extend(f"temp file left in the upload folder: {name}" for name in leftovers)
    return result
