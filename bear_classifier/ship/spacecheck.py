"""`deploy --check`: run the exact Space tree here before it goes up.

The tree is written to a temporary folder, installed into a fresh venv of the Space's Python minor from the
Space's own requirements.txt plus what the platform installs itself (`spacetree.preinstalled`: gradio at the
README's sdk_version, huggingface_hub, and on ZeroGPU `spaces`), and `app.py` is started as a Space starts it: with
the variables a Space sets (`SPACE_VARIABLES`: SYSTEM=spaces, SPACE_ID, SPACE_HOST, SPACE_AUTHOR_NAME,
SPACE_REPO_NAME, and Gradio's Space defaults: cached examples, SSR) and, for ZeroGPU, `SPACES_ZERO_GPU` with a local
stand-in of ZeroGPU's device API that records the start-up report the `spaces` package sends once the app has a
`@spaces.GPU` function. Every example is then sent to `/predict` through gradio_client, and each answer must equal
plain `load_learner` + `learn.predict` in the same venv (the course's reference) and name the card's classes; then
one example is flagged as the page flags it (raw protocol: upload, queue, "Wrong?" button) and must be stored.

Deviations from a real Space, on purpose: the server listens on 127.0.0.1, not 0.0.0.0 (a check must not open a
port to the network) on a free port the system assigns, not a Space's 7860 (two checks at once, or a Space check
beside `python app.py`, must never answer for each other); where PyTorch's CPU index cannot be reached, cpu-basic's `+cpu` torch is replaced by PyPI's
build of the same version (said when it happens); no GPU is attached.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from huggingface_hub import SpaceCard

from bear_classifier.model import modelfile
from bear_classifier.ship import spacetree
from bear_classifier.ship.spacetree import CPU_INDEX, Hardware

SPACE_ID = "bear-check/bear-classifier"
SPACE_VARIABLES = {
    "SYSTEM": "spaces",
    "SPACE_ID": SPACE_ID,
    "SPACE_AUTHOR_NAME": SPACE_ID.split("/")[0],
    "SPACE_REPO_NAME": SPACE_ID.split("/")[1],
    "SPACE_HOST": "bear-check-bear-classifier.hf.space",
    # Gradio's behaviour on a Space (stack-facts: examples cached, SSR on); app.py turns both off explicitly.
    "GRADIO_CACHE_EXAMPLES": "true",
    "GRADIO_SSR_MODE": "true",
}
"""The variables a Space's container has (hub-docs spaces-overview, "Helper environment variables")."""
ZERO_GPU_VARIABLES = {"SPACES_ZERO_GPU": "true", "GRADIO_CACHE_MODE": "lazy"}
TOLERANCE = 1e-3
"""ONNX Runtime and PyTorch agree to ~1e-5; a different transform or model would be off by far more."""


class SpaceCheckError(RuntimeError):
    """The Space tree does not install, start or answer as it should; the message says where it stopped."""


def python_for(minor: str) -> str:
    """An interpreter of `minor`: pyenv's, else `python3.X` on PATH."""
    candidates = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{minor}.*/bin/python")))
    found = candidates[-1] if candidates else shutil.which(f"python{minor}")
    if not found:
        raise SpaceCheckError(
            f"The Space runs Python {minor}, which is not installed here: install it (e.g. `pyenv install {minor}` "
            f"or your system's python{minor} package) to check this tree."
        )
    return found


def run(
    files: dict[str, bytes],
    hardware: Hardware,
    *,
    model_pickle: Path,
    vocab: list[str],
    hub_token: str | None = None,
    model: tuple[str, str] | None = None,
    workdir: Path | None = None,
    timeout: float = 600,
) -> dict[str, dict[str, float]]:
    """Install, start and call the tree `files` (see the module's text); returns {example: probabilities}.
    `model`: the (repo, revision) the Space serves from, set as its variables (else the tree's model.pkl)."""
    minor = str(SpaceCard(files["README.md"].decode()).data.python_version)
    python = python_for(minor)
    with _folder(workdir) as work:
        tree, venv = work / "space", work / "venv"
        shutil.rmtree(work / "review", ignore_errors=True)  # a kept workdir's earlier flags must not count
        for name, content in files.items():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            (tree / name).write_bytes(content)
        _log(f"Checking the {hardware.flavor} tree under Python {minor} in {work}")
        sdk_version = str(SpaceCard(files["README.md"].decode()).data.sdk_version)
        extra = spacetree.preinstalled(hardware, sdk_version)
        installed = _install(python, venv, tree / "requirements.txt", extra)
        examples = sorted((tree / "examples").glob("*.jpg"))
        reference = modelfile.smoke_predict(model_pickle, *examples, python=str(installed), timeout=timeout)
        with _device_api() as device, _app(installed, tree, hardware, device.url, hub_token, model, timeout) as url:
            try:
                answers = _predict(url, examples)
                _flag(url, examples[0])
            except Exception as e:
                raise SpaceCheckError(f"{e}. The app's log ends:\n{_tail(work / 'app.log')}") from e
            if not list((work / "review").rglob("*.jpg")):
                raise SpaceCheckError(f"a flag was answered but nothing was stored:\n{_tail(work / 'app.log')}")
            if hardware.flavor == "zero-a10g" and not device.reports:
                raise SpaceCheckError(
                    "ZeroGPU: the app started without a start-up report to the device API, so ZeroGPU would stop it "
                    "('No @spaces.GPU function detected'): with SPACES_ZERO_GPU set, app.py must `import spaces` and decorate a function (`zerogpu.prepare`)."
                )
    for example, expected in zip(examples, reference):
        got = answers[example.name]
        if sorted(got) != sorted(vocab) or sorted(expected) != sorted(vocab):
            raise SpaceCheckError(f"{example.name}: the Space answered {sorted(got)}, the card's classes are {vocab}")
        worst = max(abs(got[c] - expected[c]) for c in vocab)
        if worst > TOLERANCE:
            raise SpaceCheckError(
                f"{example.name}: the Space's probabilities {got} differ from learn.predict's {expected} by {worst:.2g}"
            )
        _log(f"  {example.name}: {max(got, key=got.get)} {max(got.values()):.1%} (learn.predict: within {worst:.1g})")
    _log(f"The {hardware.flavor} tree installs, starts and answers every example as learn.predict does.")
    return answers


def _log(message: str) -> None:
    print(message, flush=True)


@contextlib.contextmanager
def _folder(workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        yield Path(workdir)
        return
    with tempfile.TemporaryDirectory(prefix="bear-space-check-") as folder:
        yield Path(folder)


def _reachable(url: str, timeout: float = 5) -> bool:
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
        return True
    except OSError:
        return False


def _install(python: str, venv: Path, requirements: Path, preinstalled: list[str]) -> Path:
    """A fresh venv with the Space's requirements and what the platform installs beside them (`preinstalled`, in
    the same pip run, as the platform's build does); returns its python. A venv left in a kept `workdir` by an
    earlier check of the same requirements is reused (`.requirements` inside it records them)."""
    installed, record = venv / "bin" / "python", venv / ".requirements"
    text = requirements.read_text()
    original = text + "\n".join(preinstalled)
    if record.is_file() and record.read_text() == original and installed.exists():
        _log(f"  reusing {venv}: it holds exactly these requirements")
        return installed
    subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True)
    if CPU_INDEX in text and not _reachable(CPU_INDEX + "/torch/"):
        _log(f"  {CPU_INDEX} cannot be reached from here: installing PyPI's torch build of the same version instead")
        text = "\n".join(
            line.replace("+cpu", "") for line in text.splitlines() if not line.startswith("--extra-index-url")
        )
        requirements = requirements.with_name("requirements-check.txt")
        requirements.write_text(text + "\n")
    started = time.monotonic()
    done = subprocess.run(
        [
            str(installed),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
            str(requirements),
            *preinstalled,
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise SpaceCheckError(f"pip could not install the Space's requirements.txt:\n{tail}")
    _log(f"  installed the Space's requirements.txt in {time.monotonic() - started:.0f} s")
    record.write_text(original)
    return installed


class _DeviceAPI:
    """ZeroGPU's device API as the `spaces` package calls it at start-up (POST /startup-report), recorded."""

    def __init__(self) -> None:
        self.reports: list[str] = []
        self.url = ""


@contextlib.contextmanager
def _device_api() -> Iterator[_DeviceAPI]:
    api = _DeviceAPI()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            found = self.path.split("?")[0] == "/startup-report"
            if found:
                api.reports.append(self.path)
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def _port() -> int:
    """A loopback port that is free now, chosen by the system."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _app(
    python: Path,
    tree: Path,
    hardware: Hardware,
    device_url: str,
    hub_token: str | None,
    model: tuple[str, str] | None,
    timeout: float,
) -> Iterator[str]:
    """`python app.py` in `tree` with a Space's environment; yields its URL once it answers."""
    port = _port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BEAR_", "GRADIO_", "SPACE")) and k != "PYTHONPATH"}
    env.update(
        SPACE_VARIABLES,
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        BEAR_REVIEW_DIR=str(tree.parent / "review"),
        BEAR_CACHE=str(tree.parent / "cache"),
        PYTHONUNBUFFERED="1",
    )
    if model:  # the Space variables deploy sets
        env.update(BEAR_MODEL_REPO=model[0], BEAR_MODEL_REVISION=model[1])
    if hub_token:
        env["HF_TOKEN"] = hub_token
    if hardware.flavor == "zero-a10g":
        env.update(ZERO_GPU_VARIABLES, SPACES_ZERO_DEVICE_API_URL=device_url)
    log = tree.parent / "app.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [str(python), "app.py"], cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise SpaceCheckError(f"app.py exited with {process.returncode} at start-up:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise SpaceCheckError(f"app.py did not answer within {timeout:.0f} s:\n{_tail(log)}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url, timeout=5).close()
                break
            time.sleep(1)
        if process.poll() is not None:  # something else answered on that port: this app could not bind it
            raise SpaceCheckError(f"app.py exited with {process.returncode} at start-up:\n{_tail(log)}")
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _tail(log: Path, lines: int = 25) -> str:
    return "\n".join(log.read_text(errors="replace").strip().splitlines()[-lines:])


def _predict(url: str, examples: list[Path]) -> dict[str, dict[str, float]]:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    answers = {}
    for example in examples:
        probabilities, _, details = client.predict(handle_file(str(example)), api_name="/predict")
        if details.get("error"):
            raise SpaceCheckError(f"{example.name}: the Space refused it: {details['error']}")
        answers[example.name] = {c["label"]: c["confidence"] for c in probabilities["confidences"]}
    return answers


def _flag(url: str, example: Path) -> None:
    """Classify `example` and press the first "Wrong?" button in one session, speaking Gradio's protocol as the page
    does (gradio_client cannot flag: the flag must name the server's copy of the upload); raises unless it is taken."""
    import httpx

    api, session = url.rstrip("/") + "/gradio_api", f"check{time.monotonic_ns()}"
    with httpx.Client(timeout=120) as http:
        index = {
            d["api_name"]: d["id"]
            for d in http.get(url.rstrip("/") + "/config").raise_for_status().json()["dependencies"]
        }
        path = http.post(api + "/upload", files=[("files", (example.name, example.read_bytes()))]).raise_for_status()
        photo = {"path": path.json()[0], "orig_name": example.name, "meta": {"_type": "gradio.FileData"}}
        body = {"data": [photo], "fn_index": index["predict"], "session_hash": session}
        http.post(api + "/queue/join", json=body).raise_for_status()
        with http.stream("GET", api + "/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if '"process_completed"' in line:
                    break
        body = {"data": [photo, None, None, None], "fn_index": index["Flag"], "session_hash": session}
        flagged = http.post(api + "/run/Flag", json=body)
    if flagged.status_code != 200 or flagged.json().get("data") == ["Error!"]:
        raise SpaceCheckError(
            f"flagging {example.name} after its answer was refused ({flagged.status_code} {flagged.text[:200]})"
        )
    _log(f"  flagged {example.name} as the page does: stored")
