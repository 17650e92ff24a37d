"""Publishing and fetching the model on the Hugging Face Hub.

The Hub endpoint comes from `HF_ENDPOINT` (huggingface_hub's own setting), which is also how the
tests point this real client code at a local stand-in: the real Hub is never reached in tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, get_token, hf_hub_download
from huggingface_hub.utils import get_fastai_version, get_fastcore_version, get_python_version

COMMIT_SHA = re.compile(r"[0-9a-f]{40}")

NO_TOKEN_HELP = (
    "No Hugging Face token found. Log in once with `hf auth login` in a shell (or `huggingface_hub.login()`, "
    "`notebook_login()` in Jupyter/Colab), set the HF_TOKEN environment variable (a Colab secret named HF_TOKEN works "
    "too), or pass one (`token=...`, or `--token` to `python -m bear_classifier.ship.deploy`). It needs write access: "
    "https://huggingface.co/settings/tokens"
)


def pyproject() -> str:
    """The `pyproject.toml` that huggingface_hub's `push_to_hub_fastai` writes beside model.pkl: the python, fastai
    and fastcore versions of this environment (the one that exported the model), which `from_pretrained_fastai`
    checks before unpickling. Same format (`name=version`, one `=`: that is what it parses)."""
    return (
        "[build-system]\n"
        f'requires = ["setuptools>=40.8.0", "wheel", "python={get_python_version()}", '
        f'"fastai={get_fastai_version()}", "fastcore={get_fastcore_version()}"]\n'
        'build-backend = "setuptools.build_meta:__legacy__"\n'
    )


class HubError(RuntimeError):
    """A Hub setting is missing or unsafe; the message says which."""


def push(
    files: dict[str, Path], repo_id: str, token: str | None = None, message: str = "Upload bear classifier"
) -> str | None:
    """Upload `files` ({name in repo: local path}) as one commit; returns the commit SHA to pin.

    A `pyproject.toml` with this environment's python/fastai/fastcore versions goes along (unless `files` has one),
    as `push_to_hub_fastai` writes it, so the repo also loads with `huggingface_hub.from_pretrained_fastai`.

    The token is the argument, else whatever `huggingface_hub.get_token()` finds (HF_TOKEN, `login()`,
    `notebook_login()`, `hf auth login`, a Colab secret). Without one nothing is sent and None is returned, so a
    notebook run offline or by someone without a Hub account still finishes.
    """
    token = token or get_token()
    if not token:
        print(f"Not pushing to {repo_id}. {NO_TOKEN_HELP}")
        return None
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()]
    if "pyproject.toml" not in files:
        operations.append(CommitOperationAdd(path_in_repo="pyproject.toml", path_or_fileobj=pyproject().encode()))
    info = api.create_commit(repo_id, operations=operations, commit_message=message)
    print(f"Pushed {', '.join(op.path_in_repo for op in operations)} to {repo_id} at commit {info.oid}")
    return info.oid


def download(repo_id: str, revision: str | None, filename: str = "model.pkl", allow_unpinned: bool = False) -> Path:
    """Fetch `filename` from a model repo at a pinned commit.

    A pickle is code: a branch name such as "main" can change under a running Space, so only a full
    commit SHA is accepted unless `allow_unpinned`.
    """
    if not allow_unpinned and not (revision and COMMIT_SHA.fullmatch(revision)):
        raise HubError(
            f"Refusing to load {repo_id}/{filename} at revision {revision!r}: pin a 40-character commit SHA "
            "(BEAR_MODEL_REVISION), or set BEAR_ALLOW_UNPINNED=1 if you really trust whatever is pushed there."
        )
    return Path(hf_hub_download(repo_id, filename, revision=revision))  # token: huggingface_hub.get_token()


def files_to_push(
    folder: Path, names: Iterable[str] = ("model.pkl", "confusion_matrix.png"), graphs: Iterable[str] = ()
) -> dict[str, Path]:
    """The publishable outputs of a training run, with the int8 graphs its card names (`graphs`, the card's facts);
    the model card becomes the repo's README.md."""
    folder = Path(folder)
    files = {name: folder / name for name in [*names, *graphs] if (folder / name).exists()}
    files["README.md"] = folder / "model_card.md"
    return files


def public_feedback(feedback_repo: str | None, space_id: str | None) -> list[str]:
    """Warnings for a public place where flagged photos (visitors' photos) would go: the BEAR_FEEDBACK_REPO
    dataset (`CommitScheduler` keeps an existing dataset's visibility) and a Storage Bucket mounted in this Space.
    What cannot be read (no token, no network) is not warned about: the deploy command checks it too."""
    api, found = HfApi(), []
    if feedback_repo:
        try:
            if not api.repo_info(feedback_repo, repo_type="dataset").private:
                found.append(f"the feedback dataset {feedback_repo} (BEAR_FEEDBACK_REPO) is PUBLIC")
        except Exception:
            pass  # not created yet (it will be, private), or not readable from here
    if space_id:
        try:
            volumes = api.get_space_runtime(space_id).volumes or []
            for volume in volumes:
                if volume.type == "bucket" and not api.bucket_info(volume.source).private:
                    found.append(f"the Storage Bucket {volume.source} mounted at {volume.mount_path} is PUBLIC")
        except Exception:
            pass
    return [
        f"WARNING: {where}: flagged photos are visitors' photos. Make it private in its settings." for where in found
    ]
