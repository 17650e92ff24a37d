"""What makes the app start fast: model.pkl hashed once, the ONNX graph kept by the model's SHA-256 with the record
of what serving it needs (`served`: a warm start imports neither fastai nor timm), a serving side that imports no
training module, and `spaces` only on ZeroGPU. (`bench/cold_start.py` times the start against the course's app.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bear_classifier import files, serving
from bear_classifier.model import card, served, servedfiles
from bear_classifier.model.predictor import OnnxNetwork, Predictor
from bear_classifier.settings import EXAMPLES_DIR, Settings
from tests.conftest import ROOT, example


def test_start_up_hashes_model_pkl_once(monkeypatch):
    """Its SHA-256 is computed once and passed on to the checks, the load and the ONNX cache's name (it was
    computed three times, about 0.1 s of every start). The wrapper counts and still hashes."""
    hashed = []
    real = files.sha256

    def counting(path) -> str:
        hashed.append(Path(path).resolve())
        return real(path)

    monkeypatch.setattr(files, "sha256", counting)
    serving.load(Settings())
    assert hashed.count(serving.MODEL_PATH.resolve()) == 1, hashed


def test_onnx_graph_is_cached_and_reused(predictor, tmp_path):
    prefix = tmp_path / "onnx" / files.sha256(serving.MODEL_PATH)
    first = Predictor(predictor.learn, onnx_cache=prefix)
    graphs = sorted(prefix.parent.glob("*.onnx"))
    assert isinstance(first.network, OnnxNetwork) and len(graphs) == 1 + (first._guard_network is not None)
    stamps = [g.stat().st_mtime_ns for g in graphs]
    second = Predictor(predictor.learn, onnx_cache=prefix)  # reads the files: nothing is exported again
    assert [g.stat().st_mtime_ns for g in graphs] == stamps
    for image in (example("grizzly"), example("teddy")):
        a, b = first.predict(image), second.predict(image)
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6) and a.ood_score == pytest.approx(b.ood_score)


def test_the_app_imports_no_training_module(tmp_path):
    """The serving side, as it runs: no training module (`bear_classifier.training`: matplotlib's Agg backend, plots,
    pandas tables, the pretrained weights, the data folders, and `export`, which writes model files). Nor `spaces`
    outside ZeroGPU (0.3-0.7 s of every start). `test_imports` checks the same on the source."""
    script = (
        "import json, sys\n"
        "import app\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('bear_classifier') or m == 'spaces')))\n"
    )
    modules = _import_app(script, {"BEAR_REVIEW_DIR": str(tmp_path / "review")})
    assert "bear_classifier.serving" in modules
    assert not [m for m in modules if m.startswith("bear_classifier.training")]
    assert "spaces" not in modules


def test_a_warm_start_serves_without_fastai_or_timm_and_answers_the_same(predictor, tmp_path):
    """After one start has checked, loaded and exported the model into the cache, the next `import app` runs from
    the cached graphs and record: fastai and timm are never imported (4-6 s of every start), model.pkl is not
    unpickled, and every example gets the probabilities the learner's own Predictor gives on the same graphs."""
    cache = tmp_path / "cache"
    serving.load(Settings(cache=cache))  # the first start: child-process check, load_learner, export, record
    script = (
        "import json, sys\n"
        "import app\n"
        "from bear_classifier import serving\n"
        "answers = [app.service.answers.answer(e, '127.0.0.1') for e in serving.EXAMPLES]\n"
        "print(json.dumps({'modules': sorted(m for m in ('fastai', 'timm') if m in sys.modules),\n"
        "                  'learn': app.model.learn is not None,\n"
        "                  'answers': [[a.probabilities[1], a.details['ood_score']] for a in answers]}))\n"
    )
    started = _import_app(script, {"BEAR_REVIEW_DIR": str(tmp_path / "review"), "BEAR_CACHE": str(cache)})
    assert started["modules"] == [] and not started["learn"]
    prefix = cache / "onnx" / files.sha256(serving.MODEL_PATH)
    learners = Predictor(predictor.learn, onnx_cache=prefix)  # the same graph files, run from the learner's side
    for image, (probabilities, ood_score) in zip(serving.EXAMPLES, started["answers"], strict=True):
        expected = learners.predict(image)
        assert probabilities == expected.probabilities, image
        assert ood_score == round(expected.ood_score, 4), image


def test_a_space_s_first_start_serves_from_the_files_beside_the_model(predictor, tmp_path):
    """A Space starts on a fresh disk: with the served files deploy ships beside model.pkl (`servedfiles`) and an
    empty cache, nothing is unpickled and neither fastai nor timm is imported, and the answers are the learner's."""
    # What deploy does (a no-op when they are there for this model.pkl).
    servedfiles.make(serving.MODEL_PATH, card.read(serving.CARD_PATH))
    script = (
        "import json, sys\n"
        "import app\n"
        "from bear_classifier import serving\n"
        "answers = [app.service.answers.answer(e, '127.0.0.1') for e in serving.EXAMPLES]\n"
        "print(json.dumps({'modules': sorted(m for m in ('fastai', 'timm') if m in sys.modules),\n"
        "                  'learn': app.model.learn is not None,\n"
        "                  'answers': [[a.probabilities[1], a.details['ood_score']] for a in answers]}))\n"
    )
    env = {"BEAR_REVIEW_DIR": str(tmp_path / "review"), "BEAR_CACHE": str(tmp_path / "empty")}
    started = _import_app(script, env)
    assert started["modules"] == [] and not started["learn"]
    assert not (tmp_path / "empty" / "onnx").exists()  # nothing exported or recorded on the way
    prefix = servedfiles.prefix(serving.MODEL_PATH, files.sha256(serving.MODEL_PATH))
    learners = Predictor(predictor.learn, onnx_cache=prefix)  # the same graph files, run from the learner's side
    for image, (probabilities, ood_score) in zip(serving.EXAMPLES, started["answers"], strict=True):
        expected = learners.predict(image)
        assert probabilities == expected.probabilities, image
        assert ood_score == round(expected.ood_score, 4), image


def test_the_record_is_not_trusted_when_its_key_differs_or_a_graph_is_missing(tmp_path, monkeypatch):
    """A record written under other versions (here: a tampered one) or beside a missing graph sends the start the
    long way (the learner is loaded, the graph exported again), which writes the record again."""
    monkeypatch.setattr(servedfiles, "load", lambda model, sha, int8: None)  # a model without them (a Hub repo's)
    settings = Settings(cache=tmp_path)
    first = serving.load(settings)[0]
    assert first.learn is not None  # an empty cache: the long way
    prefix = tmp_path / "onnx" / files.sha256(serving.MODEL_PATH)
    assert serving.load(settings)[0].learn is None  # the record serves

    record = json.loads(served.path(prefix).read_text())
    record["key"]["versions"]["torch"] = "0.0.1"
    served.path(prefix).write_text(json.dumps(record))
    assert serving.load(settings)[0].learn is not None
    assert serving.load(settings)[0].learn is None  # rewritten under this environment's key
    # A record of older code is not trusted.
    record = json.loads(served.path(prefix).read_text())
    record["key"]["format"] = served.FORMAT - 1
    served.path(prefix).write_text(json.dumps(record))
    assert serving.load(settings)[0].learn is not None
    # Another torch build of the same release (its version string's tag, which the graphs' names carry; the
    # package metadata's version is the same): the long way, not a missing graph at start-up.
    monkeypatch.setattr(torch, "__version__", torch.__version__ + ".other")
    assert serving.load(settings)[0].learn is not None
    assert serving.load(settings)[0].learn is None
    monkeypatch.setattr(torch, "__version__", torch.__version__.removesuffix(".other"))

    prefix.with_name(first.graphs[-1]).unlink()
    assert serving.load(settings)[0].learn is not None
    assert prefix.with_name(first.graphs[-1]).is_file()  # exported again
    assert serving.load(settings)[0].learn is None


def test_nothing_that_reads_the_upload_folder_comes_before_launch_prepare(tmp_path):
    """app.py imports `launch`, then calls `launch.prepare()` (the app's own upload folder, ZeroGPU's `spaces`),
    then imports gradio: so `launch` itself imports neither gradio (some of its modules read the upload folder when
    imported) nor torch (which must come after `spaces` on ZeroGPU), and `prepare` sets the folder before gradio's
    own default is read."""
    script = (
        "import json, os, sys\n"
        "from bear_classifier import launch\n"
        "before = sorted(m for m in ('gradio', 'torch', 'fastai', 'starlette') if m in sys.modules)\n"
        "launch.prepare()\n"
        "from gradio.utils import get_upload_folder\n"
        "print(json.dumps({'before': before, 'folder': str(get_upload_folder())}))\n"
    )
    started = _import_app(script, {"GRADIO_TEMP_DIR": "", "TMPDIR": str(tmp_path)})
    assert started["before"] == []
    assert started["folder"].startswith(str(tmp_path / "bear-classifier-uploads-"))


def _import_app(script: str, env: dict[str, str]) -> object:
    """What `script` (which imports app in a fresh process, as a start does) prints last, as JSON."""
    env = {**_env(), "GRADIO_ANALYTICS_ENABLED": "False", **env}
    env.pop("SPACES_ZERO_GPU", None)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_the_first_request_imports_no_plotting_library(tmp_path):
    """Gradio asks matplotlib for its backend at every request: resolving the default imported matplotlib.pyplot
    into the first visitor's request (194 modules, 1.5 s). app.py names the backend."""
    from tests.support.appserver import AppServer
    from tests.support.rawcaller import RawCaller

    server = AppServer(tmp_path, PYTHONPROFILEIMPORTTIME="1")
    try:
        started = len(server.output())
        caller = RawCaller(server.url)
        outcome = caller.predict(caller.uploaded("b.jpg", (EXAMPLES_DIR / "black_bear.jpg").read_bytes()))
        assert outcome.success, outcome.error
        imported = [line.rsplit("|", 1)[-1].strip() for line in server.output()[started:].splitlines()]
        assert "matplotlib.pyplot" not in imported
    finally:
        server.stop()
