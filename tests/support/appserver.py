"""`python app.py` in a child process on a free loopback port, as a user starts it locally.
Used by the tests and the benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from gradio_client import Client

from bear_classifier.settings import ROOT, SPACE_SHARES

AS_ON_A_SPACE = {name: str(value) for name, value in SPACE_SHARES.items()}
"""The client shares a Space's visitors get (local defaults are far higher): for tests of what a visitor meets."""

ONE_ADDRESS = {
    "BEAR_JOINS_PER_MINUTE": "1000000",
    "BEAR_PREDICTIONS_PER_MINUTE": "1000000",
    "BEAR_UPLOAD_MB_PER_MINUTE": "1000000",
    "BEAR_FLAGS_PER_HOUR": "1000000",
    "BEAR_DECODE_CPU_SECONDS_PER_MINUTE": "1000000",
    "BEAR_DECODE_PAUSE_SECONDS": "0",
    "BEAR_STREAMS_PER_CLIENT": "1000",
    "BEAR_QUEUED_PER_CLIENT": "1000",
    "BEAR_UPLOAD_MAX_MB": "100000",
}
"""Per-client shares lifted, for a server whose callers all call from 127.0.0.1 (the shared test server, load
benchmarks): shares are tested on servers of their own (tests/test_hostile.py)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    def __init__(self, workdir: Path, app_dir: Path = ROOT, **env: str):
        """`app_dir`: the folder app.py is started in (default: this checkout; e.g. a Space's tree)."""
        self.started = time.perf_counter()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.review_dir = Path(workdir) / "review"
        self.upload_dir = Path(workdir) / "uploads"  # Gradio's cache of uploaded files
        self.log_path = Path(workdir) / "server.log"
        self._log = open(self.log_path, "w")
        environment = {
            **os.environ,
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": str(self.port),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "BEAR_REVIEW_DIR": str(self.review_dir),
            "GRADIO_TEMP_DIR": str(self.upload_dir),
            **env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=app_dir, env=environment, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._wait_until_up()

    def _wait_until_up(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.process.returncode}:\n{self.output()}")
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"app.py did not answer within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss_mb(self) -> float:
        """Resident memory of the server process now."""
        return self._status_kb("VmRSS") / 1024

    def peak_rss_mb(self) -> float:
        """Highest resident memory of the server process so far (the kernel's high-water mark)."""
        return self._status_kb("VmHWM") / 1024

    def _status_kb(self, field: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        self.process.send_signal(how)
        try:
            self.process.wait(timeout=60)  # a loaded CI machine: shutting down the decoders takes seconds
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


class CallerClients:
    """A `gradio_client.Client` per calling thread, as independent users each have their own.

    One Client shared by many threads loses about one answer in a few thousand to a race inside
    gradio_client 2.7.2 (the answer is cancelled when a submission crosses the server closing that
    session's event stream; README, "Call the API"), which a load test would blame on the server.
    """

    def __init__(self, url: str):
        self.url = url
        self._local = threading.local()

    def predict(self, *args, **kwargs):
        if not hasattr(self._local, "client"):
            self._local.client = Client(self.url, verbose=False)
        return self._local.client.predict(*args, **kwargs)


def folder_bytes(*folders: Path) -> int:
    total = 0
    for folder in folders:
        for root, _, names in os.walk(folder):
            for name in names:
                try:
                    total += (Path(root) / name).lstat().st_size
                except FileNotFoundError:
                    pass
    return total
