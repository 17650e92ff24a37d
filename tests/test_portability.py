"""model.pkl across Python minors: `export.save` writes no bytecode, so the file loads and predicts
with plain `load_learner` on another minor; `check_servable` refuses what cannot serve here.

The cross-minor tests need venvs of the other minors (`python -m bench.python_minors --build` makes
/tmp/py312 and /tmp/py313, or set BEAR_VENVS); without them they skip, saying so."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from bear_classifier.files import sha256
from bear_classifier.model import modelfile
from bear_classifier.settings import EXAMPLES_DIR, ROOT
from bear_classifier.training import export
from tests.support.minors import smoke_learner, venv_dir

IMAGE = EXAMPLES_DIR / "black_bear.jpg"
HERE = f"{sys.version_info.major}.{sys.version_info.minor}"
OTHER_MINORS = [m for m in ("3.11", "3.12", "3.13") if m != HERE]


def other_python(minor: str) -> str:
    python = venv_dir(minor) / "bin" / "python"
    if not python.exists():
        pytest.skip(
            f"no Python {minor} venv at {python.parent.parent}: build it with `python -m bench.python_minors --build`"
        )
    return str(python)


def close(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-5 for k in a)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A small learner (random weights, 64-pixel synthetic pictures) exported both ways."""
    tmp = tmp_path_factory.mktemp("portability")
    learn = smoke_learner(tmp / "pictures", pretrained=False, epochs=0)
    paths = {"portable": tmp / "portable.pkl", "fastai": tmp / "fastai.pkl"}
    export.save(learn, paths["portable"])
    export.save(learn, paths["fastai"], portable=False)
    return paths


@pytest.fixture(scope="module")
def probabilities(files) -> dict[str, float]:
    """learn.predict on this Python, with plain load_learner in a fresh process."""
    return modelfile.smoke_predict(files["portable"], IMAGE)[0]


def test_fastai_export_carries_bytecode_and_ours_does_not(files):
    assert modelfile.by_value_code(files["fastai"]) == ["PILBase.create"]
    assert modelfile.by_value_code(files["portable"]) == []
    assert not any(
        m.startswith(("bear_classifier", "bench", "tests", "__main__"))
        for m in modelfile.pickled_modules(files["portable"])
    )


def test_portable_export_predicts_like_fastai_export(files, probabilities):
    assert close(modelfile.smoke_predict(files["fastai"], IMAGE)[0], probabilities)


def test_reexport_makes_an_old_export_portable(files, probabilities, tmp_path):
    sha = export.reexport(files["fastai"], tmp_path / "model.pkl")
    assert sha == sha256(tmp_path / "model.pkl")
    assert modelfile.by_value_code(tmp_path / "model.pkl") == []
    assert close(modelfile.smoke_predict(tmp_path / "model.pkl", IMAGE)[0], probabilities)


def test_export_refuses_what_only_this_minor_could_load(files, tmp_path):
    learn = modelfile.load(files["portable"])
    learn.label_hook = lambda x: x  # what a notebook-defined function looks like to cloudpickle
    with pytest.raises(modelfile.ModelFileError, match="<lambda>.*importable module"):
        export.save(learn, tmp_path / "model.pkl")
    assert not (tmp_path / "model.pkl").exists()


def test_check_servable_says_what_to_set(files):
    here = modelfile.library_versions()
    modelfile.check_servable(files["fastai"], here)
    elsewhere = {**here, "python": "3.10.4"}
    modelfile.check_servable(files["portable"], elsewhere)  # no bytecode: any minor serves it
    with pytest.raises(modelfile.ModelFileError, match=r'python_version: "3\.10".*reexport'):
        modelfile.check_servable(files["fastai"], elsewhere)
    with pytest.raises(modelfile.ModelFileError, match=r"pip install fastai==2\.7\.19"):
        modelfile.check_servable(files["portable"], {**here, "fastai": "2.7.19"})
    patch = here["pillow"].rsplit(".", 1)[0] + ".99"
    modelfile.check_servable(files["portable"], {**here, "pillow": patch})  # a patch release is accepted


def test_startup_check_runs_one_prediction_after_the_checks(files, probabilities, monkeypatch):
    here = modelfile.library_versions()
    sha = sha256(files["portable"])
    assert close(modelfile.startup_check(files["portable"], here, IMAGE, expected_sha256=sha), probabilities)
    monkeypatch.setattr(modelfile, "smoke_predict", lambda *a, **k: pytest.fail("unpickled before the checks"))
    with pytest.raises(modelfile.ModelFileError, match="SHA-256"):
        modelfile.startup_check(files["portable"], here, IMAGE, expected_sha256="0" * 64)
    with pytest.raises(modelfile.ModelFileError, match="python_version"):
        modelfile.startup_check(files["fastai"], {**here, "python": "3.10.4"}, IMAGE)


def test_smoke_predict_survives_a_crash(files, monkeypatch):
    monkeypatch.setattr(modelfile, "_SMOKE", "import ctypes; ctypes.string_at(0)")
    with pytest.raises(modelfile.ModelFileError, match="killed by signal"):
        modelfile.smoke_predict(files["portable"], IMAGE, timeout=60)


@pytest.mark.parametrize("minor", OTHER_MINORS)
def test_exported_here_predicts_there(files, probabilities, minor):
    python = other_python(minor)
    assert close(modelfile.smoke_predict(files["portable"], IMAGE, python=python)[0], probabilities)
    # the failure this guards against: fastai's own export only runs on the minor that wrote it
    with pytest.raises(modelfile.ModelFileError):
        modelfile.smoke_predict(files["fastai"], IMAGE, python=python)


@pytest.mark.parametrize("minor", OTHER_MINORS)
def test_exported_there_predicts_here(minor, tmp_path):
    python = other_python(minor)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [python, "-m", "tests.support.minors", str(tmp_path), "--quick"]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    model = tmp_path / f"{minor}-portable.pkl"
    assert modelfile.by_value_code(model) == []
    there = modelfile.smoke_predict(model, IMAGE, python=python)[0]
    assert close(modelfile.smoke_predict(model, IMAGE)[0], there)


def test_startup_verdict_is_remembered_by_sha256(files, probabilities, tmp_path, monkeypatch):
    """The child process runs once per model and environment: its verdict is kept under the SHA-256."""
    here, sha = modelfile.library_versions(), sha256(files["portable"])
    checked = modelfile.startup_check(files["portable"], here, IMAGE, cache=tmp_path)
    assert close(checked, probabilities)
    assert modelfile.verdict_path(tmp_path, sha).is_file()
    # A second start reads the verdict: the child (crashing here, so it would be noticed) is not spawned.
    monkeypatch.setattr(modelfile, "_SMOKE", "import ctypes; ctypes.string_at(0)")
    assert close(modelfile.startup_check(files["portable"], here, IMAGE, cache=tmp_path), probabilities)
    # Another model file (another SHA-256) is checked again, and a failed check is not remembered.
    other = tmp_path / "other.pkl"
    other.write_bytes(files["portable"].read_bytes())
    with zipfile.ZipFile(other, "a") as z:
        z.writestr("extra.txt", "changes the SHA-256 only")
    with pytest.raises(modelfile.ModelFileError, match="killed by signal"):
        modelfile.startup_check(other, here, IMAGE, cache=tmp_path)
    assert not modelfile.verdict_path(tmp_path, sha256(other)).exists()
    # A verdict from other library versions does not count.
    verdict = modelfile.verdict_path(tmp_path, sha)
    verdict.write_text(verdict.read_text().replace(here["torch"], "0.0.1"))
    with pytest.raises(modelfile.ModelFileError, match="killed by signal"):
        modelfile.startup_check(files["portable"], here, IMAGE, cache=tmp_path)


def test_the_caller_works_while_the_child_checks(files, probabilities, tmp_path, monkeypatch):
    """`meanwhile` (the app's imports) runs while the child process is still checking, once, and after a failed
    check the failure still stops the start-up. A `meanwhile` that fails stops it too, the child killed."""
    here, sha = modelfile.library_versions(), sha256(files["portable"])
    seen = []

    def meanwhile() -> None:  # the verdict is written only after the child answered: not there yet
        seen.append(modelfile.verdict_path(tmp_path, sha).exists())

    assert close(
        modelfile.startup_check(files["portable"], here, IMAGE, cache=tmp_path, meanwhile=meanwhile), probabilities
    )
    assert seen == [False]
    modelfile.startup_check(files["portable"], here, IMAGE, cache=tmp_path, meanwhile=meanwhile)  # remembered
    assert seen == [False, True]

    def failing_import() -> None:
        seen.append("import")
        raise OSError("a module's own import failed")

    with pytest.raises(OSError, match="own import"):
        modelfile.startup_check(files["portable"], here, IMAGE, cache=tmp_path, meanwhile=failing_import)
    assert seen.count("import") == 1  # not taken for an unreadable verdict, then run again beside a child
    monkeypatch.setattr(modelfile, "_SMOKE", "import ctypes; ctypes.string_at(0)")
    with pytest.raises(modelfile.ModelFileError, match="killed by signal"):
        modelfile.startup_check(files["portable"], here, IMAGE, meanwhile=meanwhile)
    monkeypatch.setattr(modelfile, "_SMOKE", "import time; time.sleep(600)")

    def failing() -> None:
        raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        modelfile.startup_check(files["portable"], here, IMAGE, meanwhile=failing)
    assert time.monotonic() - started < 60  # the sleeping child was killed, not waited for
