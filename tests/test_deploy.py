"""bear_classifier.ship.deploy against the local Hub stand-in (tests/hub_standin.py): the real huggingface_hub client
creates the Space on the hardware the account may use, validates its README, uploads one commit, sets variables,
volumes and buckets, and follows the Space's runtime; only the server is ours. Also: the Space README's front
matter against huggingface_hub's own SpaceCard code and the Hub's documented limits, and the tree per hardware.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import cloudpickle
import pytest
from huggingface_hub import HfApi, SpaceCard, SpaceCardData, constants
from packaging.requirements import Requirement

from bear_classifier import page
from bear_classifier.model import card
from bear_classifier.settings import EXAMPLES_DIR, ROOT
from bear_classifier.ship import deploy, spacetree
from bear_classifier.training import card_writer
from tests.conftest import VOCAB
from tests.hub_standin import SHORT_DESCRIPTION_MAX, SPACE_COLORS, front_matter_errors, pointed_at_standin

SPACE = "bear-lab/bear-classifier"
MODEL_REPO = "bear-lab/bear-classifier"  # a model repo and a Space may share an id
TOKEN = "hf_standin_write_token"
SHA = "0123456789abcdef0123456789abcdef01234567"
# What the Space needs, and only that (examples: the photos and their licences)
APP = {"app.py", ".gitattributes", "README.md", "requirements.txt"}
MODEL = {"model.pkl", "model_card.md"}
COLAB_VERSIONS = {"python": "3.12.12", "torch": "2.8.0+cu126", "torchvision": "0.23.0+cu126", "timm": "1.0.20"}


@pytest.fixture
def standin(tmp_path, monkeypatch):
    with pointed_at_standin(tmp_path, monkeypatch) as server:
        yield server


def expected_files(with_model: bool) -> set[str]:
    code = {p.relative_to(ROOT).as_posix() for p in (ROOT / "bear_classifier").rglob("*.py")}
    examples = {p.relative_to(ROOT).as_posix() for p in EXAMPLES_DIR.iterdir() if p.is_file()}
    served = {f"served/{p.name}" for p in (ROOT / "served").glob("*")}  # made by deploy for the model.pkl
    return APP | code | examples | (MODEL | served if with_model else set())


def requirements_of(text: str) -> dict[str, Requirement]:
    lines = [line.split("#")[0].strip() for line in text.splitlines()]
    return {r.name: r for r in (Requirement(line) for line in lines if line and not line.startswith("-"))}


def pinned(name: str) -> str:
    return next(iter(requirements_of((ROOT / "requirements.txt").read_text())[name].specifier)).version


def check_space_front_matter(text: str, hardware: spacetree.Hardware) -> SpaceCardData:
    """huggingface_hub's own parsing, then the Hub's documented limits (those it refuses a push for)."""
    data = SpaceCard(text).data  # raises on a missing/invalid YAML header
    assert data.sdk == "gradio" and data.app_file == "app.py"
    assert len(data.short_description) <= SHORT_DESCRIPTION_MAX, data.short_description
    assert data.colorFrom in SPACE_COLORS and data.colorTo in SPACE_COLORS
    assert data.sdk_version == pinned("gradio")  # the platform installs gradio from sdk_version
    assert isinstance(data.python_version, str) and data.python_version in hardware.pythons  # "3.10" must not be 3.1
    assert data.suggested_hardware == hardware.flavor  # a duplicated Space gets it too
    assert isinstance(data.tags, list) and "fastai" in data.tags
    assert front_matter_errors(text, "space") == []
    return data


def push_model(standin, versions: dict[str, str], pickle: bytes | None = None, private: bool = False) -> str:
    """A model repo as the notebook pushes it (model.pkl + card), with another environment's versions."""
    facts = card.read(ROOT / "model_card.md")
    facts.versions = {**facts.versions, **versions}
    folder = Path(constants.HF_HOME) / "pushed"
    folder.mkdir(parents=True, exist_ok=True)
    card_writer.write(facts, folder / "README.md")
    key = MODEL_REPO
    if private:
        standin.private.add(key)
    files = {"model.pkl": pickle or (ROOT / "model.pkl").read_bytes(), "README.md": (folder / "README.md").read_bytes()}
    return standin.add_commit(key, files)


def bytecode_pickle() -> bytes:
    """A `learn.export`-shaped zip whose pickle carries a function by value (as fastai's plain export does)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("model/data.pkl", cloudpickle.dumps(lambda x: x + 1))
    return buffer.getvalue()


def test_space_readme_is_for_visitors_and_what_the_hub_accepts():
    text = (ROOT / "space" / "README.md").read_text(encoding="utf-8")
    assert front_matter_errors(text, "space") == []
    assert "pytest" not in text and ".ci/install" not in text  # the developer README stays home
    for hardware in spacetree.HARDWARE.values():
        files = deploy.space_files(hardware)
        data = check_space_front_matter(files["README.md"].decode(), hardware)
        assert data.license == "apache-2.0" and "preload_from_hub" not in data.to_dict()
        assert data.title == card.BEARS.title and data.emoji == card.BEARS.emoji and "bear" in data.tags
        assert files["README.md"].decode().split("---", 2)[2].strip() == page.space_body(card.BEARS, VOCAB).strip()


def test_the_standin_refuses_what_the_hub_refuses():
    """So the deploy tests below would catch the 71-character short_description the Hub refused."""
    text = deploy.space_files(spacetree.ZERO_GPU)["README.md"].decode()
    too_long = re.sub(r"short_description: .*", "short_description: " + "x" * 61, text)
    assert any("short_description" in e for e in front_matter_errors(too_long, "space"))
    orange = text.replace("colorFrom: yellow", "colorFrom: orange")
    assert any("colorFrom" in e for e in front_matter_errors(orange, "space"))


def test_a_free_account_gets_a_zerogpu_space_in_one_commit(standin, capsys):
    url = deploy.deploy(space=SPACE, token=TOKEN)

    created = [p for p in standin.created if p.get("type") == "space"]
    assert created == [
        {
            "name": "bear-classifier",
            "organization": "bear-lab",
            "type": "space",
            "sdk": "gradio",
            "hardware": "zero-a10g",
        }
    ]
    assert len(standin.commits) == 1
    commit = standin.commits[0]
    assert (commit.repo_type, commit.repo_id, commit.revision) == ("space", SPACE, "main")
    assert commit.authorization == f"Bearer {TOKEN}"
    assert set(commit.files) == expected_files(with_model=True)
    for name in ("app.py", "model.pkl", "model_card.md", ".gitattributes", "examples/grizzly_bear.jpg"):
        assert commit.files[name] == (ROOT / name).read_bytes(), name
    data = check_space_front_matter(commit.files["README.md"].decode(), spacetree.ZERO_GPU)
    assert data.python_version == "3.12"
    requirements = commit.files["requirements.txt"].decode()
    assert "--extra-index-url" not in requirements and "+cpu" not in requirements  # ZeroGPU: PyPI's torch
    newest = spacetree.ZERO_GPU_TORCH[-1]  # the card's torch is newer than ZeroGPU's list: its newest, said so
    assert str(requirements_of(requirements)["torch"].specifier) == f"=={newest}"
    assert str(requirements_of(requirements)["torchvision"].specifier) == f"=={spacetree.TORCHVISION_FOR[newest]}"
    # What the platform installs itself is not listed (a conflicting `spaces` pin fails a ZeroGPU build), nor what
    # only the batch command uses.
    assert not {"spaces", "gradio", "gradio_client", "huggingface_hub", "tqdm", "pyarrow"} & set(
        requirements_of(requirements)
    )
    assert b"*.pkl filter=lfs diff=lfs merge=lfs -text" in commit.files[".gitattributes"]
    assert set(standin.tree(f"spaces/{SPACE}")) == expected_files(with_model=True)  # the Hub's stub was replaced
    assert standin.variables.get(SPACE, {}) == {}
    assert url == f"{standin.url}/spaces/{SPACE}"
    out = capsys.readouterr().out
    assert f"pins torch {spacetree.ZERO_GPU_TORCH[-1]}" in out
    assert "zero-a10g (a free account" in out and f"Space: {url}" in out


def test_a_free_account_asking_for_cpu_basic_gets_the_402_explained_not_a_traceback(standin):
    run = subprocess.run(
        [sys.executable, "-m", "bear_classifier.ship.deploy", "--space", SPACE, "--hardware", "cpu-basic"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**_env(standin), "HF_TOKEN": TOKEN},
    )
    assert run.returncode == 2, run.stderr
    assert "402 Payment Required" in run.stderr and "--hardware zero-a10g" in run.stderr
    assert "spaces-overview" in run.stderr and "Traceback" not in run.stderr
    assert standin.commits == [] and f"spaces/{SPACE}" not in standin.repos


def test_a_third_zerogpu_space_on_a_free_account_says_what_to_do(standin):
    for name in ("one", "two"):
        deploy.deploy(space=f"bear-lab/{name}", token=TOKEN)
    with pytest.raises(deploy.DeployError, match="at most 2 Spaces"):
        deploy.deploy(space=SPACE, token=TOKEN)


def test_a_pro_account_gets_cpu_basic_with_cpu_torch(standin, capsys):
    standin.pro = True
    deploy.deploy(space=SPACE, token=TOKEN)

    assert standin.hardware[SPACE] == "cpu-basic"
    files = standin.commits[-1].files
    check_space_front_matter(files["README.md"].decode(), spacetree.CPU_BASIC)
    text = files["requirements.txt"].decode()
    assert f"--extra-index-url {spacetree.CPU_INDEX}" in text.splitlines()
    requirements = requirements_of(text)
    assert str(requirements["torch"].specifier) == f"=={pinned('torch')}+cpu"
    assert str(requirements["torchvision"].specifier) == f"=={pinned('torchvision')}+cpu"
    local = requirements_of((ROOT / "requirements.txt").read_text())
    left_out = {*spacetree.PLATFORM_PACKAGES, *spacetree.BATCH_ONLY}
    assert {n: str(r) for n, r in requirements.items() if not n.startswith("torch")} == {
        n: str(r) for n, r in local.items() if not n.startswith("torch") and n not in left_out
    }  # everything else as pinned here
    assert "a PRO account" in capsys.readouterr().out


def test_an_existing_space_keeps_its_hardware_and_can_be_moved(standin):
    standin.pro = True
    deploy.deploy(space=SPACE, token=TOKEN, hardware="zero-a10g")
    deploy.deploy(space=SPACE, token=TOKEN)  # no --hardware: the Space's own, not the plan's cpu-basic
    assert standin.hardware[SPACE] == "zero-a10g"
    assert SpaceCard(standin.commits[-1].files["README.md"].decode()).data.suggested_hardware == "zero-a10g"
    deploy.deploy(space=SPACE, token=TOKEN, hardware="cpu-basic")
    assert standin.hardware[SPACE] == "cpu-basic"


def test_the_space_follows_a_colab_model_s_versions(standin):
    sha = push_model(standin, COLAB_VERSIONS)
    deploy.deploy(space=SPACE, model_repo=MODEL_REPO, revision=sha, token=TOKEN)

    commit = standin.commits[-1]
    assert set(commit.files) == expected_files(with_model=False)  # no model.pkl: the Space downloads it
    data = check_space_front_matter(commit.files["README.md"].decode(), spacetree.ZERO_GPU)
    assert data.python_version == "3.12"  # the model's own minor, which ZeroGPU runs
    assert data.models == [MODEL_REPO] and data.preload_from_hub == [f"{MODEL_REPO} model.pkl,README.md {sha}"]
    requirements = requirements_of(commit.files["requirements.txt"].decode())
    assert str(requirements["torch"].specifier) == "==2.8.0"  # Colab's CUDA build, as PyPI names it
    assert str(requirements["torchvision"].specifier) == "==0.23.0"
    assert str(requirements["timm"].specifier) == "==1.0.20"
    assert str(requirements["fastai"].specifier) == f"=={pinned('fastai')}"  # the card's own, equal here
    assert {k: v["value"] for k, v in standin.variables[SPACE].items()} == {
        "BEAR_MODEL_REPO": MODEL_REPO,
        "BEAR_MODEL_REVISION": sha,
    }


def test_a_card_torch_off_zerogpu_s_list_gets_a_listed_one():
    pinned = {"torch": "2.9.0", "torchvision": "0.24.0"}
    assert spacetree.listed_torch(spacetree.ZERO_GPU, pinned)[0] == {"torch": "2.9.1", "torchvision": "0.24.1"}
    assert spacetree.listed_torch(spacetree.ZERO_GPU, {"torch": "2.10.0"}) == ({"torch": "2.10.0"}, None)
    assert spacetree.listed_torch(spacetree.CPU_BASIC, {"torch": "2.14.1"}) == ({"torch": "2.14.1"}, None)


def test_a_model_the_hardware_cannot_serve_is_refused_before_sending(standin):
    # Exported under 3.13 with bytecode inside: it loads on 3.13 only, which ZeroGPU does not run.
    sha = push_model(standin, {"python": "3.13.0"}, pickle=bytecode_pickle())
    with pytest.raises(deploy.DeployError, match=r"carries Python bytecode.*reexport"):
        deploy.deploy(space=SPACE, model_repo=MODEL_REPO, revision=sha, token=TOKEN)
    old = push_model(standin, {"torch": "1.13.1"})
    with pytest.raises(deploy.DeployError, match=r"accepts torch 2\.8\.0, 2\.9\.1, 2\.10\.0, 2\.11\.0"):
        deploy.deploy(space=SPACE, model_repo=MODEL_REPO, revision=old, token=TOKEN)
    assert standin.commits == [] and f"spaces/{SPACE}" not in standin.repos


def test_a_private_model_repo_needs_a_token_secret_on_the_space(standin):
    sha = push_model(standin, {}, private=True)
    deploy.deploy(space=SPACE, token=TOKEN)  # the Space exists, without secrets
    with pytest.raises(deploy.DeployError, match="is private.*HF_TOKEN"):
        deploy.deploy(space=SPACE, model_repo=MODEL_REPO, revision=sha, token=TOKEN)
    assert len(standin.commits) == 1
    HfApi(token=TOKEN).add_space_secret(SPACE, "HF_TOKEN", "hf_read")
    deploy.deploy(space=SPACE, model_repo=MODEL_REPO, revision=sha, token=TOKEN)
    assert len(standin.commits) == 2
    # Spaces cannot preload a private repo: the app downloads it at start (with HF_TOKEN), pinned by the variables
    data = SpaceCard(standin.commits[-1].files["README.md"].decode()).data
    assert data.get("preload_from_hub") is None and data.models == [MODEL_REPO]
    assert {k: v["value"] for k, v in standin.variables[SPACE].items()} == {
        "BEAR_MODEL_REPO": MODEL_REPO,
        "BEAR_MODEL_REVISION": sha,
    }


def test_a_private_model_repo_is_downloaded_at_start_with_the_token(standin, monkeypatch):
    """What the Space's start does for a private repo: serving.load's download, pinned and checked, with HF_TOKEN."""
    from bear_classifier import serving
    from bear_classifier.settings import Settings

    sha = push_model(standin, {}, private=True)
    settings = Settings.from_env({"BEAR_MODEL_REPO": MODEL_REPO, "BEAR_MODEL_REVISION": sha})
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(Exception, match="401|403|404|private|Repository Not Found|token"):
        serving.load(settings)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    model, card = serving.load(settings)
    assert model.vocab == card.vocab


def test_bucket_is_created_private_and_mounted_at_data(standin):
    deploy.deploy(space=SPACE, token=TOKEN, bucket="bear-lab/bear-reviews")
    assert standin.buckets == {"bear-lab/bear-reviews": True}
    assert standin.volumes[SPACE] == [{"type": "bucket", "source": "bear-lab/bear-reviews", "mountPath": "/data"}]
    standin.buckets["bear-lab/public-bucket"] = False
    with pytest.raises(deploy.DeployError, match="is public"):
        deploy.deploy(space=SPACE, token=TOKEN, bucket="bear-lab/public-bucket")


def test_wait_reports_running_and_the_live_answer(standin, server):
    deploy.deploy(space=SPACE, token=TOKEN)
    standin.stages[SPACE] = ["BUILDING", "APP_STARTING", "RUNNING"]
    standin.hosts[SPACE] = server.url  # the Space's app: here, `python app.py` on loopback
    details = deploy.wait_until_running(
        HfApi(token=TOKEN), SPACE, timeout=120, example=EXAMPLES_DIR / "grizzly_bear.jpg", every=0.05
    )
    assert details["label"] == "grizzly" and details["error"] is None


def test_wait_reads_only_the_new_commit_s_answer(standin, server, capsys):
    """Right after the upload the Hub still runs the previous build: its RUNNING must not count."""
    deploy.deploy(space=SPACE, token=TOKEN)
    standin.hosts[SPACE] = server.url
    standin.previous_runs[SPACE] = 3
    standin.stages[SPACE] = ["BUILDING", "RUNNING"]
    deploy.deploy(space=SPACE, token=TOKEN)  # the second upload
    old, new = standin.commits[-2].sha, standin.commits[-1].sha
    deploy.wait_until_running(
        HfApi(token=TOKEN), SPACE, timeout=120, example=EXAMPLES_DIR / "grizzly_bear.jpg", every=0.05, commit=new
    )
    out = capsys.readouterr().out
    assert out.count(f"RUNNING at {old[:7]}") == 3 and out.count(f"waiting for commit {new[:7]}") == 3
    assert f"RUNNING at {new[:7]}" in out and "/predict on grizzly_bear.jpg" in out
    assert out.index(f"RUNNING at {new[:7]}") > out.rindex(f"RUNNING at {old[:7]}")


@pytest.mark.parametrize(("stage", "log"), [("BUILD_ERROR", "build"), ("RUNTIME_ERROR", "run")])
def test_wait_reports_the_failing_stage_and_its_log(standin, stage, log):
    deploy.deploy(space=SPACE, token=TOKEN)
    standin.stages[SPACE] = ["BUILDING", stage]
    standin.logs[SPACE] = {log: [f"line {i}" for i in range(40)] + ["ModelFileError: cannot serve here"]}
    with pytest.raises(deploy.DeployError, match=stage) as error:
        deploy.wait_until_running(HfApi(token=TOKEN), SPACE, timeout=60, example=Path("unused.jpg"), every=0.05)
    message = str(error.value)
    assert message.endswith("ModelFileError: cannot serve here") and "line 39" in message and "line 5\n" not in message


def test_redeploy_with_the_local_model_removes_the_hub_pin_and_stale_files(standin):
    deploy.deploy(space=SPACE, model_repo=MODEL_REPO, revision=push_model(standin, {}), token=TOKEN)
    standin.add_commit(f"spaces/{SPACE}", {"notes.txt": b"left over"})

    deploy.deploy(space=SPACE, token=TOKEN)  # the Space exists: create_repo's 409 is fine with exist_ok

    assert standin.variables[SPACE] == {}  # else the Space would keep loading the Hub model
    assert standin.commits[-1].deleted == ["notes.txt"]
    assert set(standin.tree(f"spaces/{SPACE}")) == expected_files(with_model=True)


def test_no_token_says_how_to_log_in(standin):
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
    for name in ("app.py", ".gitattributes", "requirements.txt", "model.pkl", "model_card.md"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    readme = (ROOT / "space" / "README.md").read_text(encoding="utf-8")
    (tmp_path / "space").mkdir()
    (tmp_path / "space" / "README.md").write_text(readme.replace("colorFrom: yellow", "colorFrom: orange"))
    with pytest.raises(deploy.DeployError, match="colorFrom is 'orange'; the Hub accepts only red"):
        deploy.space_files(spacetree.ZERO_GPU, root=tmp_path)


def test_missing_model_says_what_to_do(tmp_path):
    with pytest.raises(deploy.DeployError, match="--model-repo"):
        deploy.local_model(tmp_path)


def test_the_command_line_writes_the_space_folder_for_git(tmp_path):
    """`--out` is the git way: the same files, written to a folder (no token, nothing sent)."""
    out = tmp_path / "space"
    run = subprocess.run(
        [sys.executable, "-m", "bear_classifier.ship.deploy", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == expected_files(with_model=True)
    assert (out / "requirements.txt").read_bytes() == deploy.space_files(spacetree.ZERO_GPU)["requirements.txt"]
    bad = subprocess.run(
        [sys.executable, "-m", "bear_classifier.ship.deploy", "--model-repo", MODEL_REPO],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--revision" in bad.stderr and "Traceback" not in bad.stderr


def _env(standin) -> dict[str, str]:
    """A child process pointed at the stand-in (the env vars huggingface_hub reads at import)."""
    return {**os.environ, "HF_ENDPOINT": standin.url, "HF_HOME": constants.HF_HOME, "HF_HUB_DISABLE_XET": "1"}


def test_an_example_named_for_a_class_the_model_does_not_answer_stops_the_deploy():
    """The fork that served "dog 98.6%" for its black-bear example had passed `deploy --check`."""
    assert [deploy.example_class(n, VOCAB) for n in ("black_bear.jpg", "teddy.jpg", "cat.jpg", "blackish.jpg")] == [
        "black",
        "teddy",
        None,
        None,
    ]
    assert deploy.example_class("hot-dog_2.jpg", ["dog", "hot-dog"]) == "hot-dog"  # the longest class named
    answered = {"black_bear.jpg": {"black": 0.9, "grizzly": 0.05, "teddy": 0.05}, "cat.jpg": {"teddy": 0.6}}
    deploy.check_examples(answered, VOCAB)  # a name without a class may get any answer
    with pytest.raises(deploy.DeployError, match=r"grizzly_bear.jpg names grizzly, the model answers black \(98.6%\)"):
        deploy.check_examples({**answered, "grizzly_bear.jpg": {"black": 0.986, "grizzly": 0.014}}, VOCAB)
