"""Hostile callers of the public Space at full size, against `python app.py` on loopback: issue 9's attacks
(`table`) and issue 17's, each beside an honest visitor (`fairness`). The callers and their payloads are
tests/support's `rawcaller` and `hard_inputs`; the test suite runs each attack at a small size
(tests/test_hostile.py).

    python -m bench.hostile       # about 3 minutes; prints the table BENCHMARKS.md holds
    python -m bench.hostile fair  # issue 17: an honest visitor's latency, CPU and disk per attack, about 6 minutes
    python -m bench.hostile crowd # issue 28: the same visitor while 2, 4 and 8 addresses attack, about 4 minutes
    python -m bench.hostile crowd decoders  # one of its attacks (decoders, uploads, streams)
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from bear_classifier.settings import EXAMPLES_DIR
from tests.support import hard_inputs
from tests.support.appserver import AS_ON_A_SPACE, AppServer, folder_bytes
from tests.support.rawcaller import (
    FILE_DATA,
    RawCaller,
    data_url,
    dropped_upload,
    flood_queue,
    held_upload,
    oversized_body,
)


def table() -> str:
    """Run the full-size attacks against a fresh `python app.py`; a markdown table of what happened."""
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        server = AppServer(Path(tmp), **AS_ON_A_SPACE)
        try:
            before = server.rss_mb()
            start = time.perf_counter()
            counts = flood_queue(server.url, 3000, source="127.0.0.2")
            rows.append(
                (
                    "3,000 queue/join in a burst from 127.0.0.2, results never read",
                    f"answers (HTTP status, detail) counted {counts}",
                    f"{time.perf_counter() - start:.1f} s",
                )
            )
            caller = RawCaller(server.url, source="127.0.0.3")
            answered = caller.predict(caller.uploaded("bear.jpg", (EXAMPLES_DIR / "black_bear.jpg").read_bytes()))
            rows.append(
                (
                    "a normal prediction from 127.0.0.3 after the flood",
                    "answered" if answered.success else answered.error,
                    "",
                )
            )
            for megabytes, chunked in ((300, False), (300, True)):
                status = oversized_body(server.url, megabytes, chunked)
                rows.append((f"{megabytes} MB JSON body{' (chunked)' if chunked else ''}", f"HTTP {status}", ""))
            upload = caller.upload(*[(f"f{i}.jpg", b"\xff\xd8" + b"\0" * (10 * 2**20 - 2)) for i in range(40)])
            rows.append(("40 x 10 MB files in one upload request", f"HTTP {upload.status_code}", ""))
            start = time.perf_counter()
            outcome = caller.predict(data_url(hard_inputs.huge_png(13_300)))
            rows.append(
                (
                    "13300² PNG as a data URL",
                    (outcome.data or [None, None, {}])[2].get("error") or outcome.error,
                    f"{time.perf_counter() - start:.1f} s",
                )
            )
            rows.append(("server memory (RSS) growth over all of the above", f"{server.rss_mb() - before:+.0f} MB", ""))
        finally:
            server.stop()
    return "| attack | outcome | time |\n|---|---|---|\n" + "\n".join(
        "| " + " | ".join(map(str, row)) + " |" for row in rows
    )


def honest_photos(n: int) -> list[bytes]:
    """`n` different photos (answers are kept by content, so a repeated photo would cost nothing)."""
    picture = Image.open(EXAMPLES_DIR / "black_bear.jpg").convert("RGB")
    return [hard_inputs.encode(picture.rotate(i * 0.5), "JPEG", quality=90) for i in range(n)]


def big_photo() -> bytes:
    picture = Image.open(EXAMPLES_DIR / "grizzly_bear.jpg").convert("RGB").resize((8160, 6120))
    return hard_inputs.encode(picture, "JPEG", quality=90)


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of the server and of every process it started (decoder workers, live or already replaced)."""
    import psutil

    process = psutil.Process(pid)
    own = process.cpu_times()
    total = own.user + own.system + own.children_user + own.children_system
    for child in process.children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


NOT_ALLOWED = ["/run/upload", "/api/predict", "/queue/upload", "/call/v2/predict", "/run/predict/upload", "/x/upload"]
"""Routes a page never calls: `POST /gradio_api/run/upload` used to get the upload treatment (issue 17)."""


class Attacks:
    """Issue 17's attacks, each one round of requests from `caller`; each returns how many requests it sent."""

    def __init__(self, url: str):
        self.url = url
        self.scans_1000 = hard_inputs.many_scans_jpeg(scans=1000)  # refused by the pre-check
        self.slow_27 = hard_inputs.many_scans_jpeg(scans=27)  # passes the pre-check; costs its decode budget
        self.big = big_photo()
        self.small = hard_inputs.encode(Image.open(EXAMPLES_DIR / "teddy_bear.jpg").convert("RGB"), "JPEG")

    def catalogue(self) -> list[tuple[str, Any]]:
        return [
            ("progressive JPEG, 1,000 refinement scans (200 KB), new session each time", self.many_scans),
            ("progressive JPEG, 27 scans at 50 MP (passes the pre-check), new content each time", self.slow_scans),
            (
                '"Wrong?" on a slow (50 MP) photo: upload, predict, flag, new session and content each time',
                self.flag_slow,
            ),
            ("one 50 MP JPEG joined again and again under fresh session hashes, never read", self.rejoins),
            ("POST /run/upload and 5 other non-allow-listed routes (web-address payload)", self.routes),
            ('fn_index "0" and 0.0 to /run/predict (around the queue)', self.fn_index),
            (
                "orphan temp files: an extra multipart part, a chunked upload over the cap, a dropped upload",
                self.orphans,
            ),
            ("10 MB uploads as fast as answered", self.uploads),
            (
                "a new session per flag (upload, predict, flag a new photo) to fill the review folder",
                self.flag_sessions,
            ),
            ("30,000 nested [ to /queue/join", self.nested),
        ]

    def many_scans(self, caller: RawCaller) -> int:
        caller.session = uuid.uuid4().hex
        caller.predict(caller.uploaded("scans.jpg", self.scans_1000))
        return 2

    def slow_scans(self, caller: RawCaller) -> int:
        caller.session = uuid.uuid4().hex
        caller.predict(caller.uploaded(f"slow{uuid.uuid4().hex}.jpg", self.slow_27 + uuid.uuid4().bytes))
        return 2

    def flag_slow(self, caller: RawCaller) -> int:
        return self._flag_new_photo(caller, "big.jpg", self.big, button=1)

    def rejoins(self, caller: RawCaller) -> int:
        if not hasattr(caller, "big"):
            caller.big = caller.uploaded("big.jpg", self.big)
        caller.session = uuid.uuid4().hex
        caller.join([caller.big])
        return 1

    def routes(self, caller: RawCaller) -> int:
        body = {"data": [{"path": "https://example.com/b.jpg", "meta": FILE_DATA}], "session_hash": caller.session}
        for path in NOT_ALLOWED:
            caller.http.post(caller.api + path, json=body)
        return len(NOT_ALLOWED)

    def fn_index(self, caller: RawCaller) -> int:
        for value in ("0", 0.0):
            body = {"data": [{"path": "https://example.com/b.jpg", "meta": FILE_DATA}], "fn_index": value}
            caller.http.post(caller.api + "/run/predict", json=body | {"session_hash": caller.session})
        return 2

    def orphans(self, caller: RawCaller) -> int:
        extra = [("files", ("a.jpg", self.small)), ("other", ("b.jpg", b"x" * 2**20))]
        caller.http.post(caller.api + "/upload", files=extra)
        head = b"--b\r\nContent-Disposition: form-data; name=files; filename=c.jpg\r\n\r\n"
        caller.http.post(
            caller.api + "/upload",
            content=iter([head] + [b"x" * 2**20] * 12),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        dropped_upload(self.url, source=caller.source)
        return 3

    def uploads(self, caller: RawCaller) -> int:
        caller.upload((f"{uuid.uuid4().hex}.jpg", b"\xff\xd8" + uuid.uuid4().bytes * (10 * 2**16 - 1)))
        return 1

    def flag_sessions(self, caller: RawCaller) -> int:
        return self._flag_new_photo(caller, "t.jpg", self.small, button=2)

    @staticmethod
    def _flag_new_photo(caller: RawCaller, name: str, photo: bytes, button: int) -> int:
        """A new session predicts a never-seen copy of `photo` (random bytes appended), then flags it."""
        caller.session = uuid.uuid4().hex
        uploaded = caller.uploaded(name, photo + uuid.uuid4().bytes)
        caller.predict(uploaded)
        caller.flag(uploaded, button=button)
        return 3

    def nested(self, caller: RawCaller) -> int:
        caller.http.post(
            caller.api + "/queue/join", content=b"[" * 30_000, headers={"content-type": "application/json"}
        )
        return 1


def fairness(seconds: float = 24) -> str:
    """Each attack from 4 threads at an address of its own (127.0.2.x, so that one attack's spent share does
    not make the next one look harmless) for `seconds`, while an honest visitor at 127.0.0.3 sends a new photo
    every 4 s: the visitor's latencies, the server's CPU time (its decoder workers included) and disk per attack
    request, and the server's memory after start-up and after all attacks."""
    import tempfile
    import threading

    from bench import p95

    photos = honest_photos(120)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        server = AppServer(Path(tmp), **AS_ON_A_SPACE)
        attacks = Attacks(server.url)
        folders = (server.upload_dir, server.review_dir)
        try:
            honest = RawCaller(server.url, source="127.0.0.3")
            honest.predict(honest.uploaded("warm.jpg", photos.pop()))
            started = server.rss_mb()
            for row, (name, attack) in enumerate([*attacks.catalogue(), ("none", None)], start=1):
                done, sent, peak = threading.Event(), [0], [0]
                cpu, disk = tree_cpu_seconds(server.process.pid), folder_bytes(*folders)

                def attacking(attack=attack, done=done, sent=sent, row=row) -> None:
                    caller = RawCaller(server.url, source=f"127.0.2.{row}")
                    while not done.is_set():
                        try:
                            sent[0] += attack(caller)
                        except (httpx.HTTPError, OSError):  # refused or cut off: the attack goes on
                            sent[0] += 1

                def watching(done=done, peak=peak, disk=disk) -> None:
                    while not done.wait(0.5):
                        peak[0] = max(peak[0], folder_bytes(*folders) - disk)

                threads = [threading.Thread(target=attacking) for _ in range(4 if attack else 0)]
                threads.append(threading.Thread(target=watching))
                for thread in threads:
                    thread.start()
                latencies, failed, end = [], 0, time.perf_counter() + seconds
                while time.perf_counter() < end:
                    start = time.perf_counter()
                    try:
                        outcome = honest.predict(honest.uploaded("b.jpg", photos.pop()))
                        answered = outcome.success and outcome.data[2]["error"] is None
                    except httpx.HTTPError:
                        answered = False
                    latencies.append(time.perf_counter() - start)
                    failed += not answered
                    time.sleep(max(0.0, 4 - latencies[-1]))  # a person's pace, inside the share of 20 a minute
                done.set()
                for thread in threads:
                    thread.join()
                spent = tree_cpu_seconds(server.process.pid) - cpu
                rows.append(
                    (
                        name,
                        sent[0],
                        f"{len(latencies) - failed}/{len(latencies)}",
                        f"{sorted(latencies)[len(latencies) // 2]:.2f}",
                        f"{p95(latencies):.2f}",
                        f"{spent:.1f} ({spent / max(1, sent[0]):.3f})" if attack else f"{spent:.1f}",
                        f"{peak[0] / 2**20:.1f}",
                    )
                )
            time.sleep(5)
            leftovers = [p.name for p in server.upload_dir.iterdir() if p.is_file()]
            rss = (
                f"after start-up {started:.0f} MB, after all attacks {server.rss_mb():.0f} MB "
                f"(peak {server.peak_rss_mb():.0f} MB); temp files left in the upload folder: {len(leftovers)}"
            )
        finally:
            server.stop()
    table = (
        "| attack (4 threads, its own address) | attack requests | honest answered | honest median s | "
        "honest p95 s | server CPU s (per attack request) | peak disk growth MB |\n|---|---|---|---|---|---|---|\n"
    )
    return table + "\n".join("| " + " | ".join(map(str, row)) + " |" for row in rows) + f"\n\nServer RSS: {rss}."


class Crowd:
    """Issue 28's attacks, each one round from one address: costly decoders (items 1-2), filling the upload
    folder, held streams."""

    def __init__(self, url: str):
        self.url = url
        self.costly = [hard_inputs.rle_bmp(), hard_inputs.junk_byte_jpeg(), hard_inputs.many_scans_jpeg(scans=27)]

    def catalogue(self) -> list[tuple[str, Any]]:
        return [
            ("RLE BMP, junk-byte JPEG, 27-scan 50 MP JPEG in turn, new content each time", self.decoders),
            ("10 MB uploads as fast as answered", self.uploads),
            ("8 uploads held open (half sent) per address", self.streams),
        ]

    def decoders(self, caller: RawCaller) -> int:
        caller.session = uuid.uuid4().hex
        content = self.costly[caller.round % 3] + uuid.uuid4().bytes
        caller.round += 1
        caller.predict(caller.uploaded("x.bin", content))
        return 2

    def uploads(self, caller: RawCaller) -> int:
        caller.upload((f"{uuid.uuid4().hex}.jpg", b"\xff\xd8" + uuid.uuid4().bytes * (10 * 2**16 - 1)))
        return 1

    def streams(self, caller: RawCaller) -> int:
        caller.held = [s for s in caller.held if s.fileno() != -1]
        while len(caller.held) < 8:
            caller.held.append(held_upload(self.url, caller.source))
        time.sleep(1)
        return 0


def crowd(only: str | None = None, seconds: float = 20, sizes: tuple[int, ...] = (2, 4, 8)) -> str:
    """Each of `Crowd`'s attacks from 2, 4 and 8 addresses (127.0.2.x, 2 threads each) for `seconds`, while an
    honest visitor at 127.0.0.3 sends a new photo every 4 s: its answers, median and 95th percentile latency, and
    how often it was told "busy"; the server's memory after start-up and at the end. `only`: one attack
    (`decoders`, `uploads` or `streams`)."""
    import tempfile
    import threading

    from bench import p95

    photos = honest_photos(200)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        server = AppServer(Path(tmp))
        attacks = Crowd(server.url)
        try:
            honest = RawCaller(server.url, source="127.0.0.3")
            honest.predict(honest.uploaded("warm.jpg", photos.pop()))
            started = server.rss_mb()
            block = 0
            chosen = [(n, a) for n, a in attacks.catalogue() if only in (None, a.__name__)]
            for name, attack in [*chosen, ("none", None)]:
                for addresses in sizes if attack else (0,):
                    block += 1
                    done = threading.Event()

                    def attacking(source: str, attack=attack, done=done) -> None:
                        while not done.is_set():
                            try:  # its own open requests may be at their cap (429) already
                                caller = RawCaller(server.url, source=source)
                                break
                            except (httpx.HTTPError, OSError):
                                time.sleep(0.5)
                        else:
                            return
                        caller.round, caller.held = 0, []
                        while not done.is_set():
                            try:
                                attack(caller)
                            except (httpx.HTTPError, OSError):  # refused or cut off: the attack goes on
                                time.sleep(0.1)
                        for held in caller.held:
                            held.close()

                    threads = [
                        threading.Thread(target=attacking, args=(f"127.0.{100 + block}.{a + 1}",))
                        for a in range(addresses)
                        for _ in range(2)
                    ]
                    for thread in threads:
                        thread.start()
                    latencies, failed, busy, end = [], 0, 0, time.perf_counter() + seconds
                    while time.perf_counter() < end:
                        start = time.perf_counter()
                        try:
                            outcome = honest.predict(honest.uploaded("b.jpg", photos.pop()))
                            answered = outcome.success and outcome.data[2]["error"] is None
                            busy += "busy" in str(outcome.error)
                        except httpx.HTTPError as e:
                            answered = False
                            busy += "busy" in str(e) or "503" in str(e)
                        latencies.append(time.perf_counter() - start)
                        failed += not answered
                        time.sleep(max(0.0, 4 - latencies[-1]))
                    done.set()
                    for thread in threads:
                        thread.join()
                    rows.append(
                        (
                            name,
                            addresses,
                            f"{len(latencies) - failed}/{len(latencies)}",
                            f"{sorted(latencies)[len(latencies) // 2]:.2f}",
                            f"{p95(latencies):.2f}",
                            busy,
                        )
                    )
            rss = f"after start-up {started:.0f} MB, at the end {server.rss_mb():.0f} MB (peak {server.peak_rss_mb():.0f} MB)"
        finally:
            server.stop()
    table = (
        "| attack | addresses | honest answered | honest median s | honest p95 s | honest told busy |\n"
        "|---|---|---|---|---|---|\n"
    )
    return table + "\n".join("| " + " | ".join(map(str, row)) + " |" for row in rows) + f"\n\nServer RSS: {rss}."


def main() -> None:
    import sys

    modes = {"fair": fairness, "crowd": crowd}
    print(modes[sys.argv[1]](*sys.argv[2:]) if sys.argv[1:] else table())


if __name__ == "__main__":
    main()
