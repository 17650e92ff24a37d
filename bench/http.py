"""Through HTTP, as API users see it: `gradio_client` callers against `python app.py` on loopback.

For batching on and off: cold start (process start to first answer), throughput and latency with
1, 4 and 16 concurrent callers, and the server's peak memory.

    python -m bench.http

The callers share one `Client`: it keeps one event stream open for all of them, so the client side,
which runs on the same CPU cores, costs the least and the figures are the server's. (A Client per
caller, as the soak test uses, opens a stream per request and halved throughput here; the shared
Client's rare lost answer, see research/client_race.py, would stop this run with an error.)
"""

from __future__ import annotations

import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from gradio_client import Client, handle_file

from bear_classifier.settings import EXAMPLES_DIR
from bench import p95
from tests.support.appserver import ONE_ADDRESS, AppServer

EXAMPLES = sorted(EXAMPLES_DIR.glob("*.jpg"))


@dataclass
class LoadRow:
    batching: bool
    callers: int
    requests: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    @property
    def p95_ms(self) -> float:
        return p95(self.latencies_ms)


@dataclass
class ServerRun:
    batching: bool
    cold_start_s: float
    peak_rss_mb: float
    rows: list[LoadRow]


def load(client: Client, batching: bool, callers: int, requests: int) -> LoadRow:
    def one(i: int) -> float:
        start = time.perf_counter()
        client.predict(handle_file(str(EXAMPLES[i % len(EXAMPLES)])), api_name="/predict")
        return (time.perf_counter() - start) * 1000

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=callers) as pool:
        latencies = list(pool.map(one, range(requests)))
    return LoadRow(batching, callers, requests, time.perf_counter() - start, latencies)


def measure(batching: bool, requests: int = 96, callers: tuple[int, ...] = (1, 4, 16)) -> ServerRun:
    with tempfile.TemporaryDirectory() as tmp:
        server = AppServer(Path(tmp), BEAR_BATCH="1" if batching else "0", **ONE_ADDRESS)
        try:
            client = Client(server.url, verbose=False)
            client.predict(handle_file(str(EXAMPLES[0])), api_name="/predict")
            cold_start = time.perf_counter() - server.started
            load(client, batching, 4, 16)  # warm-up
            rows = [load(client, batching, n, requests) for n in callers]
            return ServerRun(batching, cold_start, server.peak_rss_mb(), rows)
        finally:
            server.stop()


def table(runs: list[ServerRun]) -> str:
    lines = [
        "| batching | callers | requests | throughput (req/s) | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        for row in run.rows:
            lines.append(
                f"| {'on' if row.batching else 'off'} | {row.callers} | {row.requests} | {row.throughput:.1f} | "
                f"{statistics.median(row.latencies_ms):.0f} | {row.p95_ms:.0f} |"
            )
    lines += [
        "",
        "| batching | cold start: process start to first API answer (s) | server peak RSS (MB) |",
        "|---|---|---|",
    ]
    lines += [f"| {'on' if r.batching else 'off'} | {r.cold_start_s:.1f} | {r.peak_rss_mb:.0f} |" for r in runs]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table([measure(True), measure(False)]))
