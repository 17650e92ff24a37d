"""Deploy the app to a Hugging Face Space in one command:

    python -m bear_classifier.deploy --space you/bear-classifier
    python -m bear_classifier.deploy --space you/bear-classifier --model-repo you/bear-classifier --revision <sha>
    python -m bear_classifier.deploy --out build/space        # write the Space's files for git, send nothing

It creates the Space if needed (Gradio SDK), uploads exactly the files the Space runs in one commit (the app,
`bear_classifier/*.py`, `examples/`, the model and its card unless served from a model repo, README.md with the
Space's front matter, requirements.txt for a CPU Space, the Hub's standard .gitattributes) and deletes anything
else a previous upload left there, sets the Space variables, and prints the Space's URL. Large files (model.pkl)
are handled by huggingface_hub (Xet/LFS); no git or git-lfs needed.

The Hub is reached through `huggingface_hub.HfApi`, whose endpoint comes from HF_ENDPOINT (which is how the tests
point it at a local stand-in, tests/hub_standin.py).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, SpaceCard, get_token

from .hub import COMMIT_SHA
from .settings import ROOT

REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")
# PyTorch's CPU-only wheels: on Linux, torch from PyPI pulls ~4 GB of CUDA (nvidia-*, triton) a CPU Space never uses.
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CPU_PACKAGES = ("torch", "torchvision")
MODEL_VARIABLES = ("BEAR_MODEL_REPO", "BEAR_MODEL_REVISION")
NO_TOKEN_HELP = (
    "No Hugging Face token found. Log in once with `hf auth login` (or `huggingface_hub.login()`, "
    "`notebook_login()` in Jupyter/Colab), set HF_TOKEN, or pass --token. It needs write access: "
    "https://huggingface.co/settings/tokens"
)


class DeployError(RuntimeError):
    """Something the user must fix before deploying; the message says what."""


# The Hub refuses a Space README that breaks these: https://huggingface.co/docs/hub/spaces-config-reference
SHORT_DESCRIPTION_MAX = 60
SPACE_COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")


def check_front_matter(card: SpaceCard) -> None:
    """Fail before sending anything where the Hub would refuse the commit."""
    data = card.data
    if data.sdk != "gradio" or not data.app_file:
        raise DeployError("README.md's front matter must say `sdk: gradio` and `app_file: app.py`")
    short = data.get("short_description")
    if short is not None and len(str(short)) > SHORT_DESCRIPTION_MAX:
        raise DeployError(
            f"README.md's short_description is {len(str(short))} characters; the Hub refuses more than "
            f"{SHORT_DESCRIPTION_MAX}: shorten it"
        )
    for key in ("colorFrom", "colorTo"):
        if data.get(key) is not None and data.get(key) not in SPACE_COLORS:
            raise DeployError(f"README.md's {key} is {data.get(key)!r}; the Hub accepts only {', '.join(SPACE_COLORS)}")


def space_readme(text: str, *, model_repo: str | None = None, revision: str | None = None) -> str:
    """README.md with the Space's front matter: with a model repo, `models:` names it and `preload_from_hub:`
    fetches model.pkl and its card at the pinned commit while the Space is built (so start-up needs no download)."""
    card = SpaceCard(text)
    check_front_matter(card)
    if not model_repo:
        return text
    card.data.models = [model_repo, *(m for m in (card.data.models or []) if m != model_repo)]
    card.data.preload_from_hub = [f"{model_repo} model.pkl,README.md {revision}"]
    return str(card)


def space_requirements(text: str) -> str:
    """requirements.txt for the Space: the same pins, with torch/torchvision as PyTorch's CPU-only builds
    (`+cpu` local versions, from PyTorch's CPU index; everything else still comes from PyPI)."""
    lines = [
        "# Written by bear_classifier.deploy: CPU-only torch/torchvision, no CUDA wheels on a CPU Space.",
        f"--extra-index-url {CPU_INDEX}",
    ]
    for line in text.splitlines():
        match = re.match(rf"^({'|'.join(CPU_PACKAGES)})==([\w.]+)(\s*#.*)?$", line.strip())
        lines.append(f"{match[1]}=={match[2]}+cpu{match[3] or ''}" if match else line)
    missing = [name for name in CPU_PACKAGES if not any(re.match(rf"^{name}==.*\+cpu", line) for line in lines)]
    if missing:
        raise DeployError(f"requirements.txt must pin {', '.join(missing)} as `name==version` (the exporting versions)")
    return "\n".join(lines) + "\n"


def space_files(*, model_repo: str | None = None, revision: str | None = None, root: Path = ROOT) -> dict[str, bytes]:
    """{path in the Space: content}: exactly what the Space runs, nothing else (no venv, runs, reviews, tests,
    benchmarks, notebooks, caches or type stubs)."""
    root = Path(root)
    files: dict[str, bytes] = {}
    for pattern in ("app.py", ".gitattributes", "bear_classifier/*.py", "examples/*"):
        for path in sorted(root.glob(pattern)):
            if path.is_file():
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    for name in ("app.py", ".gitattributes"):
        if name not in files:
            raise DeployError(f"{root / name} is missing: run the deploy command from a checkout of the project")
    if not model_repo:
        for name in ("model.pkl", "model_card.md"):
            if not (root / name).is_file():
                raise DeployError(
                    f"No {name} at {root}: train a model first (training.ipynb), or serve one from the Hub with "
                    "--model-repo you/bear-classifier --revision <commit sha>"
                )
            files[name] = (root / name).read_bytes()
    readme = (root / "README.md").read_text(encoding="utf-8")
    files["README.md"] = space_readme(readme, model_repo=model_repo, revision=revision).encode()
    files["requirements.txt"] = space_requirements((root / "requirements.txt").read_text(encoding="utf-8")).encode()
    return files


def check_options(*, space: str | None, model_repo: str | None, revision: str | None) -> None:
    if space is not None and not REPO_ID.fullmatch(space):
        raise DeployError(f"--space {space!r} is not a Space id: use `your-name/space-name`")
    if model_repo is not None and not REPO_ID.fullmatch(model_repo):
        raise DeployError(f"--model-repo {model_repo!r} is not a model repo id: use `your-name/repo-name`")
    if revision and not model_repo:
        raise DeployError("--revision pins the model repo: give --model-repo too, or leave both out to ship model.pkl")
    if model_repo and not (revision and COMMIT_SHA.fullmatch(revision)):
        raise DeployError(
            f"--model-repo {model_repo} needs --revision <40-character commit SHA> (got {revision!r}): a pickle is "
            "code, so the Space loads it at a pinned commit only. Use the SHA printed by the notebook's push, or "
            f"`python -c \"from huggingface_hub import HfApi; print(HfApi().model_info('{model_repo}').sha)\"`."
        )


def write(folder: Path, *, model_repo: str | None = None, revision: str | None = None, root: Path = ROOT) -> Path:
    """Write the Space's files into `folder` (e.g. a clone of the Space, for git users); sends nothing."""
    check_options(space=None, model_repo=model_repo, revision=revision)
    folder = Path(folder)
    for name, content in space_files(model_repo=model_repo, revision=revision, root=root).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def deploy(
    *,
    space: str,
    model_repo: str | None = None,
    revision: str | None = None,
    token: str | None = None,
    private: bool | None = None,
    root: Path = ROOT,
) -> str:
    """Create or update the Space `space` in one commit; returns its URL.

    With `model_repo` and `revision`, the Space serves model.pkl from that model repo at that commit (Space
    variables BEAR_MODEL_REPO/BEAR_MODEL_REVISION, and `preload_from_hub` in the README); without, it serves the
    local model.pkl, and those variables are removed if an earlier deploy set them.
    """
    check_options(space=space, model_repo=model_repo, revision=revision)
    files = space_files(model_repo=model_repo, revision=revision, root=root)
    token = token or get_token()
    if not token:
        raise DeployError(NO_TOKEN_HELP)
    api = HfApi(token=token)
    url = api.create_repo(space, repo_type="space", space_sdk="gradio", exist_ok=True, private=private)
    # Variables first: setting one restarts the Space, and the build that the commit starts must see them.
    if model_repo:
        api.add_space_variable(space, "BEAR_MODEL_REPO", model_repo, description="Hub model repo serving model.pkl")
        api.add_space_variable(space, "BEAR_MODEL_REVISION", revision, description="its pinned commit SHA")
    else:
        for key in set(MODEL_VARIABLES) & set(api.get_space_variables(space)):
            api.delete_space_variable(space, key)
    stale = [path for path in api.list_repo_files(space, repo_type="space") if path not in files]
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=data) for name, data in files.items()]
    operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
    model = f"{model_repo}@{revision[:7]}" if model_repo else "model.pkl"
    info = api.create_commit(
        space, repo_type="space", operations=operations, commit_message=f"Deploy bear classifier ({model})"
    )
    print(f"Uploaded {len(files)} files{f', deleted {len(stale)}' if stale else ''} to {space} at commit {info.oid}")
    print(f"Space: {url}")
    return str(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bear_classifier.deploy",
        description="Deploy the bear classifier to a Hugging Face Space (created if needed), in one commit.",
    )
    parser.add_argument("--space", help="the Space id, e.g. your-name/bear-classifier")
    parser.add_argument("--model-repo", help="serve model.pkl from this Hub model repo instead of the local file")
    parser.add_argument("--revision", help="the model repo's commit SHA to pin (required with --model-repo)")
    parser.add_argument("--token", help="a write token (default: HF_TOKEN or the token saved by `hf auth login`)")
    parser.add_argument("--private", action="store_true", default=None, help="create the Space private")
    parser.add_argument("--out", type=Path, help="write the Space's files into this folder (for git) and send nothing")
    args = parser.parse_args(argv)
    try:
        if args.out:
            folder = write(args.out, model_repo=args.model_repo, revision=args.revision)
            print(f"Wrote the Space's files to {folder}")
            return 0
        if not args.space:
            parser.error("--space your-name/space-name is required (or --out FOLDER to write the files only)")
        deploy(
            space=args.space, model_repo=args.model_repo, revision=args.revision, token=args.token, private=args.private
        )
    except DeployError as e:
        parser.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
