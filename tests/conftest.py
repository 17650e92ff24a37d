"""Shared fixtures: the real shipped model, and `python app.py` running on a free loopback port."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BEARS = ROOT.parent / "shared" / "data" / "bears"  # licensed for training and testing only
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python app.py` in a child process, as a user starts it locally."""

    def __init__(self, tmp: Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.review_dir = tmp / "review"
        self.log = open(tmp / "server.log", "w+")
        environment = {
            **os.environ,
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": str(self.port),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "BEAR_REVIEW_DIR": str(self.review_dir),
            **env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, env=environment, stdout=self.log, stderr=subprocess.STDOUT
        )
        self._wait_until_up()

    def _wait_until_up(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.process.returncode}:\n{self.output()}")
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"app.py did not answer within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return Path(self.log.name).read_text()

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("server"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def client(server):
    from gradio_client import Client

    return Client(server.url, verbose=False)


@pytest.fixture(scope="session")
def predictor():
    from bear_classifier import serving

    return serving.load_predictor()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def example(label: str) -> Path:
    return EXAMPLES / {"black": "black_bear.jpg", "grizzly": "grizzly_bear.jpg", "teddy": "teddy_bear.jpg"}[label]


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """training.ipynb executed headless (papermill) with the smoke configuration; returns its output folder."""
    import papermill

    out = tmp_path_factory.mktemp("smoke")
    papermill.execute_notebook(
        str(ROOT / "training.ipynb"),
        str(out / "training.ipynb"),
        cwd=str(ROOT),
        parameters=dict(
            data_dir=str(BEARS), max_per_class=8, batch_size=8, image_size=64, epochs=1,
            learning_rate=None, output_dir=str(out), run_dir=str(out / "run"), show_cleaner=False,
        ),
        progress_bar=False,
    )
    return out
