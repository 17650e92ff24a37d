"""Publishing and fetching the model on the Hugging Face Hub.

The Hub endpoint comes from `HF_ENDPOINT` (huggingface_hub's own setting), which is also how the
tests point this real client code at a local stand-in: the real Hub is never reached in tests.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download

COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


class HubError(RuntimeError):
    """A Hub setting is missing or unsafe; the message says which."""


def push(files: dict[str, Path], repo_id: str, token: str | None = None, message: str = "Upload bear classifier") -> str | None:
    """Upload `files` ({name in repo: local path}) as one commit; returns the commit SHA to pin.

    Without a token (argument or HF_TOKEN) nothing is sent and None is returned, so a notebook run
    offline or by someone without a Hub account still finishes.
    """
    token = token or os.environ.get("HF_TOKEN")
    if not token:
        print(f"HF_TOKEN is not set: not pushing to {repo_id}. Set it (a write token) to publish.")
        return None
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()]
    info = api.create_commit(repo_id, operations=operations, commit_message=message)
    print(f"Pushed {', '.join(files)} to {repo_id} at commit {info.oid}")
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
    return Path(hf_hub_download(repo_id, filename, revision=revision, token=os.environ.get("HF_TOKEN")))


def files_to_push(folder: Path, names: Iterable[str] = ("model.pkl", "confusion_matrix.png")) -> dict[str, Path]:
    """The publishable outputs of a training run; the model card becomes the repo's README.md."""
    folder = Path(folder)
    files = {name: folder / name for name in names if (folder / name).exists()}
    files["README.md"] = folder / "model_card.md"
    return files
