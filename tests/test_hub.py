"""bear_classifier.ship.hub against a local stand-in for the Hub (tests/hub_standin.py): the real huggingface_hub client
code runs (create_repo, preupload, NDJSON commit, hf_hub_download's HEAD + GET and cache), only the server is ours.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
from pathlib import Path

import pytest

from bear_classifier.settings import Settings
from bear_classifier.ship import hub
from tests.conftest import VOCAB
from tests.hub_standin import pointed_at_standin

REPO = "bear-lab/bear-classifier"
TOKEN = "hf_standin_write_token"


@pytest.fixture
def standin(tmp_path, monkeypatch):
    """The stand-in, with huggingface_hub pointed at it and a throw-away cache (see `pointed_at_standin`)."""
    with pointed_at_standin(tmp_path, monkeypatch) as server:
        yield server


@pytest.fixture
def run_folder(tmp_path):
    """What a training run leaves behind: small dummy files, so the bytes can be compared."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(b"\x80\x04not really a pickle\x00\xff" * 50)
    (folder / "model_card.md").write_text("---\nlicense: apache-2.0\n---\n# Bear classifier\nGrizzly, black or teddy.")
    (folder / "confusion_matrix.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    return folder


def test_push_sends_all_outputs_in_one_authenticated_commit(standin, run_folder, capsys):
    files = hub.files_to_push(run_folder)
    assert set(files) == {"model.pkl", "README.md", "confusion_matrix.png"}

    sha = hub.push(files, REPO, token=TOKEN, message="Bear classifier, run 7")

    assert len(standin.commits) == 1, standin.requests
    commit = standin.commits[0]
    assert commit.repo_id == REPO and commit.revision == "main"
    assert commit.message == "Bear classifier, run 7"
    assert commit.authorization == f"Bearer {TOKEN}"
    assert commit.files == {
        "model.pkl": (run_folder / "model.pkl").read_bytes(),
        "README.md": (run_folder / "model_card.md").read_bytes(),
        "confusion_matrix.png": (run_folder / "confusion_matrix.png").read_bytes(),
        "pyproject.toml": hub.pyproject().encode(),
    }
    assert sha == commit.sha and re.fullmatch(r"[0-9a-f]{40}", sha)
    assert sha in capsys.readouterr().out

    created = [r for r in standin.requests if r.path == "/api/repos/create"]
    assert len(created) == 1 and created[0].headers.get("authorization") == f"Bearer {TOKEN}"
    assert REPO in standin.repos
    api_calls = [r for r in standin.requests if r.path != "/api/agent-harnesses"]  # user-agent telemetry, no token
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in api_calls)


def test_pushed_files_download_at_the_returned_sha(standin, run_folder):
    sha = hub.push(hub.files_to_push(run_folder), REPO, token=TOKEN)
    path = hub.download(REPO, sha, "model.pkl")
    assert path.read_bytes() == (run_folder / "model.pkl").read_bytes()


def test_push_without_token_sends_nothing(standin, run_folder, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert hub.push(hub.files_to_push(run_folder), REPO) is None
    assert standin.requests == []
    out = capsys.readouterr().out
    assert "No Hugging Face token found" in out and REPO in out and "notebook_login()" in out and "HF_TOKEN" in out


def test_push_uses_the_token_saved_by_login(standin, run_folder):
    """`login()`/`notebook_login()`/`hf auth login` save the token to HF_TOKEN_PATH (the tmp HF_HOME here): push
    finds it through huggingface_hub.get_token(), with no HF_TOKEN in the environment."""
    from huggingface_hub import constants

    Path(constants.HF_TOKEN_PATH).parent.mkdir(parents=True, exist_ok=True)
    Path(constants.HF_TOKEN_PATH).write_text("hf_saved_by_notebook_login")

    assert hub.push(hub.files_to_push(run_folder), REPO) is not None
    commit = standin.commits[0]
    assert commit.authorization == "Bearer hf_saved_by_notebook_login"


def test_pyproject_is_what_push_to_hub_fastai_writes():
    from huggingface_hub import fastai_utils

    assert hub.pyproject() == fastai_utils.PYPROJECT_TEMPLATE
    toml = pytest.importorskip("toml", reason="huggingface_hub[fastai] extra (requirements-dev.txt) not installed")
    requires = toml.loads(hub.pyproject())["build-system"]["requires"]
    assert f"python={platform.python_version()}" in requires
    assert f"fastai={importlib.metadata.version('fastai')}" in requires
    assert f"fastcore={importlib.metadata.version('fastcore')}" in requires


def test_download_at_pinned_sha(standin, tmp_path):
    data = b"model bytes \x00\x01\x02" * 100
    sha = standin.add_commit(REPO, {"model.pkl": data})
    standin.add_commit(REPO, {"model.pkl": b"a newer model on main"})  # main moves on; the pin must not

    path = hub.download(REPO, sha)

    assert path.read_bytes() == data
    assert path.resolve().is_relative_to((tmp_path / "hf_home" / "hub").resolve())  # not ~/.cache
    resolves = [r for r in standin.requests if "/resolve/" in r.path]
    assert {r.method for r in resolves} == {"HEAD", "GET"}
    assert all(r.path == f"/{REPO}/resolve/{sha}/model.pkl" for r in resolves)
    assert all("authorization" not in r.headers for r in resolves)  # no token set, none saved in the tmp HF_HOME


@pytest.mark.parametrize("revision", ["main", None, "v1.0", "0123abc"])
def test_download_refuses_unpinned_revision(standin, revision):
    standin.add_commit(REPO, {"model.pkl": b"whatever main points at"})
    with pytest.raises(hub.HubError, match="pin a 40-character commit SHA"):
        hub.download(REPO, revision)
    assert standin.requests == []


def test_download_unpinned_when_allowed(standin):
    standin.add_commit(REPO, {"model.pkl": b"old"})
    standin.add_commit(REPO, {"model.pkl": b"latest on main"})
    path = hub.download(REPO, "main", allow_unpinned=True)
    assert path.read_bytes() == b"latest on main"
    assert any(r.method == "GET" and r.path == f"/{REPO}/resolve/main/model.pkl" for r in standin.requests)


def test_downloaded_file_with_wrong_sha256_is_refused(standin):
    from bear_classifier.model import modelfile

    sha = standin.add_commit(REPO, {"model.pkl": b"not the model you expected"})
    path = hub.download(REPO, sha)
    with pytest.raises(modelfile.ModelFileError, match="SHA-256"):
        modelfile.load(path, expected_sha256="0" * 64)


def test_the_app_serves_a_pinned_hub_model(standin, monkeypatch):
    """BEAR_MODEL_REPO + BEAR_MODEL_REVISION: serving.load downloads model and card at that commit."""
    from bear_classifier import serving

    sha = standin.add_commit(
        REPO, {"model.pkl": serving.MODEL_PATH.read_bytes(), "README.md": serving.CARD_PATH.read_bytes()}
    )
    standin.add_commit(REPO, {"model.pkl": b"an unreviewed push to main"})
    monkeypatch.setenv("BEAR_MODEL_REPO", REPO)
    monkeypatch.setenv("BEAR_MODEL_REVISION", sha)

    predictor, facts = serving.load(Settings.from_env())

    assert predictor.vocab == facts.vocab == VOCAB
    assert {r.path for r in standin.requests if r.method == "GET" and "/resolve/" in r.path} == {
        f"/{REPO}/resolve/{sha}/model.pkl",
        f"/{REPO}/resolve/{sha}/README.md",
    }


def test_the_app_refuses_an_unpinned_hub_model(standin, monkeypatch):
    from bear_classifier import serving

    monkeypatch.setenv("BEAR_MODEL_REPO", REPO)
    monkeypatch.setenv("BEAR_MODEL_REVISION", "main")
    with pytest.raises(hub.HubError):
        serving.load(Settings.from_env())


def test_a_pushed_model_loads_with_from_pretrained_fastai(standin):
    """The other library's way in: what hub.push publishes (model.pkl, card, pyproject.toml) is a repo that
    huggingface_hub.from_pretrained_fastai loads (snapshot_download: tree listing + every file, then its
    pyproject.toml version check, which needs `toml`, then load_learner)."""
    pytest.importorskip("toml", reason="from_pretrained_fastai needs huggingface_hub[fastai] (toml), requirements-dev")
    import timm  # noqa: F401  the learner needs it (README says so)
    from huggingface_hub import from_pretrained_fastai

    from bear_classifier import serving

    sha = hub.push({"model.pkl": serving.MODEL_PATH, "README.md": serving.CARD_PATH}, REPO, token=TOKEN)
    standin.add_commit(REPO, {"model.pkl": b"an unreviewed push to main"})

    learn = from_pretrained_fastai(REPO, revision=sha)

    assert list(learn.dls.vocab) == VOCAB
    assert any(r.path == f"/api/models/{REPO}/tree/{sha}" for r in standin.requests)
    downloaded = {r.path for r in standin.requests if r.method == "GET" and "/resolve/" in r.path}
    assert f"/{REPO}/resolve/{sha}/pyproject.toml" in downloaded and f"/{REPO}/resolve/{sha}/model.pkl" in downloaded


def test_the_app_explains_why_it_does_not_serve_a_push_to_hub_fastai_repo(standin, monkeypatch):
    """A repo written by huggingface_hub's push_to_hub_fastai has a template README with no `bear_classifier:`
    facts (accuracy, data, the pickle's SHA-256). serving.load refuses it with a message that says why and what to
    do, instead of a bare KeyError('bear_classifier')."""
    pytest.importorskip("toml", reason="push_to_hub_fastai needs huggingface_hub[fastai] (toml): requirements-dev.txt")
    from huggingface_hub import push_to_hub_fastai

    from bear_classifier import serving
    from bear_classifier.model import card, modelfile

    learn = modelfile.load(serving.MODEL_PATH)
    push_to_hub_fastai(learn, repo_id=REPO, token=TOKEN)
    commit = standin.commits[-1]
    assert {"model.pkl", "README.md", "pyproject.toml"} <= set(commit.files)
    monkeypatch.setenv("BEAR_MODEL_REPO", REPO)
    monkeypatch.setenv("BEAR_MODEL_REVISION", commit.sha)

    with pytest.raises(card.MissingFactsError, match="push_to_hub_fastai") as error:
        serving.load(Settings.from_env())
    assert "bear_classifier.ship.hub.push" in str(error.value) and "BEAR_MODEL_REPO" in str(error.value)


def test_a_public_place_for_flags_is_warned_about_at_start_up(standin):
    from huggingface_hub import HfApi, Volume

    api = HfApi(token=TOKEN)
    assert hub.public_feedback("bear-lab/not-created-yet", None) == []  # the app creates it private
    api.create_repo("bear-lab/reviews", repo_type="dataset", private=True)
    assert hub.public_feedback("bear-lab/reviews", None) == []
    api.create_repo("bear-lab/open-reviews", repo_type="dataset")
    assert hub.public_feedback("bear-lab/open-reviews", None) == [
        "WARNING: the feedback dataset bear-lab/open-reviews (BEAR_FEEDBACK_REPO) is PUBLIC: flagged photos are "
        "visitors' photos. Make it private in its settings."
    ]
    api.create_repo("bear-lab/space", repo_type="space", space_sdk="gradio", space_hardware="zero-a10g")
    api.create_bucket("bear-lab/open-bucket")
    api.set_space_volumes("bear-lab/space", [Volume(type="bucket", source="bear-lab/open-bucket", mount_path="/data")])
    (warning,) = hub.public_feedback(None, "bear-lab/space")
    assert "bear-lab/open-bucket mounted at /data is PUBLIC" in warning
    api.create_bucket("bear-lab/closed-bucket", private=True)
    api.set_space_volumes(
        "bear-lab/space", [Volume(type="bucket", source="bear-lab/closed-bucket", mount_path="/data")]
    )
    assert hub.public_feedback(None, "bear-lab/space") == []
