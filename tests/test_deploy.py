"""bear_classifier.deploy against the local Hub stand-in (tests/hub_standin.py): the real huggingface_hub client
creates the Space, validates its README, uploads one commit and sets variables; only the server is ours.
Also: the README's front matter against huggingface_hub's own SpaceCard code and the Hub's documented limits.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import SpaceCard, SpaceCardData, constants
from huggingface_hub.repocard import metadata_load
from packaging.requirements import Requirement

from bear_classifier import deploy
from bear_classifier.settings import EXAMPLES_DIR, ROOT
from tests.hub_standin import SHORT_DESCRIPTION_MAX, SPACE_COLORS, front_matter_errors, pointed_at_standin

SPACE = "bear-lab/bear-classifier"
MODEL_REPO = "bear-lab/bear-classifier"  # a model repo and a Space may share an id
TOKEN = "hf_standin_write_token"
SHA = "0123456789abcdef0123456789abcdef01234567"
# What the Space needs, and only that (examples: the photos and their licences)
APP = {"app.py", ".gitattributes", "README.md", "requirements.txt"}
MODEL = {"model.pkl", "model_card.md"}


@pytest.fixture
def standin(tmp_path, monkeypatch):
    with pointed_at_standin(tmp_path, monkeypatch) as server:
        yield server


def expected_files(with_model: bool) -> set[str]:
    code = {p.relative_to(ROOT).as_posix() for p in (ROOT / "bear_classifier").glob("*.py")}
    examples = {p.relative_to(ROOT).as_posix() for p in EXAMPLES_DIR.iterdir() if p.is_file()}
    return APP | code | examples | (MODEL if with_model else set())


def pinned(name: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if re.match(rf"^{re.escape(name)}==", line.strip()):
            return next(iter(Requirement(line.split("#")[0]).specifier)).version
    raise AssertionError(f"{name} is not pinned in requirements.txt")


def check_space_front_matter(text: str) -> SpaceCardData:
    """huggingface_hub's own parsing, then the Hub's documented limits (those it refuses a push for)."""
    card = SpaceCard(text)  # raises on a missing/invalid YAML header
    data = card.data
    assert data.sdk == "gradio" and data.app_file == "app.py"
    assert len(data.short_description) <= SHORT_DESCRIPTION_MAX, data.short_description
    assert data.colorFrom in SPACE_COLORS and data.colorTo in SPACE_COLORS
    assert data.sdk_version == pinned("gradio")  # the platform installs gradio from sdk_version
    assert str(data.python_version) == "3.11"  # a string: YAML would read 3.10 as 3.1
    assert isinstance(data.tags, list) and "fastai" in data.tags
    assert front_matter_errors(text, "space") == []
    return data


def test_readme_front_matter_is_what_the_hub_accepts():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    data = check_space_front_matter(text)
    assert metadata_load(ROOT / "README.md")["short_description"] == data.short_description
    assert data.license == "apache-2.0"
    assert "preload_from_hub" not in data.to_dict()  # the committed README serves the committed model.pkl


def test_the_standin_refuses_what_the_hub_refuses():
    """So the deploy tests below would catch the 71-character short_description the Hub refused."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    too_long = re.sub(r"short_description: .*", "short_description: " + "x" * 61, text)
    assert any("short_description" in e for e in front_matter_errors(too_long, "space"))
    orange = text.replace("colorFrom: yellow", "colorFrom: orange")
    assert any("colorFrom" in e for e in front_matter_errors(orange, "space"))


def test_deploy_uploads_the_app_and_model_in_one_commit(standin, capsys):
    url = deploy.deploy(space=SPACE, token=TOKEN)

    created = [p for p in standin.created if p.get("type") == "space"]
    assert created == [{"name": "bear-classifier", "organization": "bear-lab", "type": "space", "sdk": "gradio"}]
    assert len(standin.commits) == 1
    commit = standin.commits[0]
    assert (commit.repo_type, commit.repo_id, commit.revision) == ("space", SPACE, "main")
    assert commit.authorization == f"Bearer {TOKEN}"
    assert set(commit.files) == expected_files(with_model=True)
    for name in ("app.py", "model.pkl", "model_card.md", ".gitattributes", "examples/grizzly_bear.jpg"):
        assert commit.files[name] == (ROOT / name).read_bytes(), name
    assert commit.files["README.md"] == (ROOT / "README.md").read_bytes()
    check_space_front_matter(commit.files["README.md"].decode())
    assert b"*.pkl filter=lfs diff=lfs merge=lfs -text" in commit.files[".gitattributes"]
    # The Space holds exactly these files afterwards: the stub README/.gitattributes the Hub made were replaced.
    assert set(standin.tree(f"spaces/{SPACE}")) == expected_files(with_model=True)
    assert standin.variables.get(SPACE, {}) == {}
    assert url == f"{standin.url}/spaces/{SPACE}"
    assert f"Space: {url}" in capsys.readouterr().out
    api_calls = [r for r in standin.requests if r.path != "/api/agent-harnesses"]
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in api_calls)
    assert any(r.path == f"/api/spaces/{SPACE}/commit/main" for r in standin.requests)


def test_deploy_serving_a_hub_model_pins_it_everywhere(standin):
    deploy.deploy(space=SPACE, model_repo=MODEL_REPO, revision=SHA, token=TOKEN)

    commit = standin.commits[-1]
    assert set(commit.files) == expected_files(with_model=False)  # no model.pkl: the Space downloads it
    data = check_space_front_matter(commit.files["README.md"].decode())
    assert data.models == [MODEL_REPO]
    assert data.preload_from_hub == [f"{MODEL_REPO} model.pkl,README.md {SHA}"]
    assert {k: v["value"] for k, v in standin.variables[SPACE].items()} == {
        "BEAR_MODEL_REPO": MODEL_REPO,
        "BEAR_MODEL_REVISION": SHA,
    }


def test_redeploy_with_the_local_model_removes_the_hub_pin_and_stale_files(standin):
    deploy.deploy(space=SPACE, model_repo=MODEL_REPO, revision=SHA, token=TOKEN)
    standin.add_commit(f"spaces/{SPACE}", {"notes.txt": b"left over"})

    deploy.deploy(space=SPACE, token=TOKEN)  # the Space exists: create_repo's 409 is fine with exist_ok

    assert standin.variables[SPACE] == {}  # else the Space would keep loading the Hub model
    assert standin.commits[-1].deleted == ["notes.txt"]
    assert set(standin.tree(f"spaces/{SPACE}")) == expected_files(with_model=True)
    assert len([p for p in standin.created if p.get("type") == "space"]) == 2


def test_space_requirements_install_cpu_torch_with_the_same_pins():
    text = deploy.space_files()["requirements.txt"].decode()
    local = (ROOT / "requirements.txt").read_text()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == f"--extra-index-url {deploy.CPU_INDEX}"
    requirements = {Requirement(line.split("#")[0]).name: Requirement(line.split("#")[0]) for line in lines[1:]}
    assert str(requirements["torch"].specifier) == f"=={pinned('torch')}+cpu"
    assert str(requirements["torchvision"].specifier) == f"=={pinned('torchvision')}+cpu"
    # Everything else is the local file, line for line.
    others = [line for line in text.splitlines()[2:] if not re.match(r"^torch(vision)?==", line)]
    assert others == [line for line in local.splitlines() if not re.match(r"^torch(vision)?==", line)]


def test_no_token_says_how_to_log_in(standin, monkeypatch):
    with pytest.raises(deploy.DeployError, match="hf auth login") as error:
        deploy.deploy(space=SPACE)
    assert "--token" in str(error.value) and "HF_TOKEN" in str(error.value)
    assert standin.requests == []


def test_the_token_saved_by_login_is_used(standin):
    Path(constants.HF_TOKEN_PATH).parent.mkdir(parents=True, exist_ok=True)
    Path(constants.HF_TOKEN_PATH).write_text("hf_saved_by_login")
    deploy.deploy(space=SPACE)
    assert standin.commits[0].authorization == "Bearer hf_saved_by_login"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"space": "bear-classifier"}, "your-name/space-name"),
        ({"space": SPACE, "model_repo": MODEL_REPO}, "40-character commit SHA"),
        ({"space": SPACE, "model_repo": MODEL_REPO, "revision": "main"}, "40-character commit SHA"),
        ({"space": SPACE, "revision": SHA}, "give --model-repo too"),
    ],
)
def test_bad_options_say_the_fix_and_send_nothing(standin, options, message):
    with pytest.raises(deploy.DeployError, match=message):
        deploy.deploy(token=TOKEN, **options)
    assert standin.requests == []


def test_a_readme_the_hub_would_refuse_stops_the_deploy_before_sending(standin, tmp_path):
    for name in ("app.py", ".gitattributes", "requirements.txt"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (tmp_path / "README.md").write_text(re.sub(r"short_description: .*", "short_description: " + "x" * 71, readme))
    with pytest.raises(deploy.DeployError, match="short_description is 71 characters; the Hub refuses more than 60"):
        deploy.deploy(space=SPACE, model_repo=MODEL_REPO, revision=SHA, token=TOKEN, root=tmp_path)
    assert standin.requests == []


def test_missing_model_says_what_to_do(tmp_path):
    for name in ("app.py", ".gitattributes", "README.md", "requirements.txt"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    with pytest.raises(deploy.DeployError, match="--model-repo"):
        deploy.space_files(root=tmp_path)
    assert "model.pkl" not in deploy.space_files(root=tmp_path, model_repo=MODEL_REPO, revision=SHA)


def test_the_command_line_writes_the_space_folder_for_git(tmp_path):
    """`--out` is the git way: the same files, written to a folder (no token, nothing sent)."""
    out = tmp_path / "space"
    run = subprocess.run(
        [sys.executable, "-m", "bear_classifier.deploy", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == expected_files(with_model=True)
    bad = subprocess.run(
        [sys.executable, "-m", "bear_classifier.deploy", "--model-repo", MODEL_REPO],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--space" in bad.stderr
