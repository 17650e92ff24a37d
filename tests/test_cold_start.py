"""What makes the app start fast: model.pkl hashed once, the ONNX graph kept by the model's SHA-256, and a
serving side that imports no training module. (`bench/cold_start.py` times the start against the course's app.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bear_classifier import modelfile, serving
from bear_classifier.predictor import OnnxNetwork, Predictor
from bear_classifier.settings import Settings
from tests.conftest import ROOT, example
from tests.test_imports import TRAINING, WRITING


def test_start_up_hashes_model_pkl_once(monkeypatch):
    """Its SHA-256 is computed once and passed on to the checks, the load and the ONNX cache's name (it was
    computed three times, about 0.1 s of every start). The wrapper counts and still hashes."""
    hashed = []
    real = modelfile.sha256

    def counting(path) -> str:
        hashed.append(Path(path).resolve())
        return real(path)

    monkeypatch.setattr(modelfile, "sha256", counting)
    serving.load(Settings())
    assert hashed.count(serving.MODEL_PATH.resolve()) == 1, hashed


def test_onnx_graph_is_cached_and_reused(predictor, tmp_path):
    prefix = tmp_path / "onnx" / modelfile.sha256(serving.MODEL_PATH)
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
    """The serving side, as it runs: no training module (train: matplotlib's Agg backend, plots, pandas tables;
    imagenet: the pretrained weights; data, evaluate), and not `export`, which writes model files. fastai itself
    still imports matplotlib and pandas (load_learner needs fastai), as the course's app does. `test_imports`
    checks the same on the source."""
    script = (
        "import json, sys\n"
        "import app\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('bear_classifier'))))\n"
    )
    env = {"BEAR_REVIEW_DIR": str(tmp_path / "review"), "GRADIO_ANALYTICS_ENABLED": "False"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600, env={**_env(), **env}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert "bear_classifier.serving" in modules
    assert not set(modules) & (TRAINING | WRITING)


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)
