"""Shared fixtures: the real shipped model, and `python app.py` running on a free loopback port."""

from __future__ import annotations

from tests import tempdirs  # first: the temp folder moves into the clone before gradio_client fixes its own

# isort: split
import ast
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from bear_classifier.settings import EXAMPLES_DIR, ROOT
from bear_classifier.training.search import DEFAULT_TERMS
from tests.support.appserver import ONE_ADDRESS, AppServer, CallerClients

VOCAB = sorted(DEFAULT_TERMS)  # the shipped model's classes: the folders the notebook searches for, in fastai's order
BEARS = (
    ROOT.parent / "shared" / "data" / "bears"
)  # the real photos: licensed for training and testing only, not in the repo
FIXTURE_BEARS = (
    ROOT / "tests" / "fixtures" / "bears"
)  # 8 licence-clean images per class, committed (see ATTRIBUTION.md there)
ARTIFACTS = ROOT / "test-artifacts"

needs_real_bears = pytest.mark.skipif(
    not BEARS.is_dir(),
    reason=f"needs the real bear photos in {BEARS} (not in the repo: licensed for this workspace only)",
)


UNLIMITED = ONE_ADDRESS
"""For the shared server: every test client calls from 127.0.0.1, so per-client shares are tested on a server
of their own (tests/test_hostile.py, `fair_server`)."""


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    running = AppServer(tmp_path_factory.mktemp("server"), **UNLIMITED)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def client(server):
    from gradio_client import Client

    return Client(server.url, verbose=False)


@pytest.fixture(scope="session")
def callers(server) -> CallerClients:
    """For concurrent calls: a client per calling thread, as separate users have."""
    return CallerClients(server.url)


@pytest.fixture(scope="session")
def predictor():
    from bear_classifier import serving
    from bear_classifier.settings import Settings

    return serving.load(Settings(), learner=True)[0]  # the tests compare it with its learner


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def example(label: str) -> Path:
    return EXAMPLES_DIR / {"black": "black_bear.jpg", "grizzly": "grizzly_bear.jpg", "teddy": "teddy_bear.jpg"}[label]


def variants(source: Path, folder: Path, n: int, start: int = 0) -> None:
    """`n` different photos made from one (crops, mirror images, JPEG qualities): no duplicates."""
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.open(source).convert("RGB")
    w, h = image.size
    for i in range(start, start + n):
        cut = i % 4 * 0.03
        crop = image.crop((int(w * cut), int(h * cut), int(w * (1 - cut / 2)), int(h * (1 - cut / 2))))
        (ImageOps.mirror(crop) if i % 2 else crop).save(folder / f"{source.stem}_{i}.jpg", quality=70 + i)


def plain_fastai_predict(model: Path, image: Path, cwd: Path) -> tuple[str, list[str], float]:
    """The course's two lines, `load_learner` and `learn.predict`, in a fresh process that never
    imports this package: (label, vocab, sum of the probabilities)."""
    script = (
        "import sys, timm\n"
        "from fastai.vision.all import load_learner\n"
        f"learn = load_learner({str(model)!r})\n"
        f"label, index, probs = learn.predict({str(image)!r})\n"
        "assert 'bear_classifier' not in sys.modules\n"
        "print(repr((label, list(learn.dls.vocab), round(float(probs.sum()), 4))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """training.ipynb executed headless (papermill) with the smoke configuration; returns its output folder.

    Trains on the committed fixture set, so it runs anywhere and never reaches the notebook's web search
    (which only runs when `data_dir` does not exist). It writes to a temp folder, except fastai's lr_find
    scratch weights: models/_tmp.pth in the repo (gitignored), deleted when lr_find ends.
    """
    import papermill

    assert (FIXTURE_BEARS / "teddy").is_dir(), (
        f"{FIXTURE_BEARS} is missing: rebuild it with tests/fixtures/make_bears.py"
    )
    out = tmp_path_factory.mktemp("smoke")
    papermill.execute_notebook(
        str(ROOT / "training.ipynb"),
        str(out / "training.ipynb"),
        cwd=str(ROOT),
        parameters=dict(
            data_dir=str(FIXTURE_BEARS),
            max_per_class=8,
            batch_size=8,
            image_size=64,
            zero_shot_sizes=[64],
            wise_alphas=[0.0, 1.0],  # every candidate kind, each trained 1 epoch; validation chooses
            epochs=1,
            output_dir=str(out),
            run_dir=str(out / "run"),
            show_cleaner=False,
        ),
        progress_bar=False,
    )
    return out


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    tempdirs.finish(passed=exitstatus == 0)


def pytest_terminal_summary(terminalreporter, exitstatus: int) -> None:
    if exitstatus != 0:
        terminalreporter.write_line(f"temporary files of this run, kept for a look: {tempdirs.RUN}")
    outside = tempdirs.left_outside()
    if outside:
        terminalreporter.section("new in the system temp folder (this run's, or another process's)", yellow=True)
        for path in outside:
            terminalreporter.write_line(str(path))
