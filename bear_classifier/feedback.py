"""Human in the loop: users flag wrong answers, people review them, the model learns from them.

The "Wrong?" buttons store the uploaded image, the model's answer and the user's correction in a
review folder (Gradio's CSV flagging format). On a Space, point it at persistent storage (/data) or
set BEAR_FEEDBACK_REPO to sync it to a Hub dataset, since a Space's own disk is wiped on restart.
`fine_tune_on_reviews` then continues training the shipped model on the corrected images.

Configuration: BEAR_REVIEW_DIR (folder), BEAR_FEEDBACK_REPO (Hub dataset id, needs HF_TOKEN).
"""
from __future__ import annotations

import csv
import os
import shutil
import tempfile
from contextlib import nullcontext
from pathlib import Path

import gradio as gr
from fastai.vision.all import Learner

from . import data, export
from .predictor import input_size

NOT_A_BEAR = "not a bear"


def review_dir() -> Path:
    """BEAR_REVIEW_DIR, else Spaces' persistent storage when mounted, else ./review."""
    if "BEAR_REVIEW_DIR" in os.environ:
        return Path(os.environ["BEAR_REVIEW_DIR"])
    return Path("/data/review") if Path("/data").is_dir() else Path("review")


def flag_options(vocab: list[str]) -> list[tuple[str, str]]:
    """Button text and stored value for each correction a user can give."""
    return [(f"Wrong: it is a {label} bear", label) for label in vocab] + [("Wrong: not a bear", NOT_A_BEAR)]


class ReviewLog(gr.CSVLogger):
    """Gradio's CSV flagging, optionally synced to a Hub dataset by a `CommitScheduler`."""

    def __init__(self, hub_repo: str | None = None):
        super().__init__()
        self.hub_repo = hub_repo
        self.scheduler = None

    def setup(self, components, flagging_dir):
        super().setup(components, flagging_dir)
        if self.hub_repo:
            from huggingface_hub import CommitScheduler

            self.scheduler = CommitScheduler(repo_id=self.hub_repo, repo_type="dataset", folder_path=flagging_dir, every=5)

    def flag(self, flag_data, flag_option=None, username=None) -> int:
        # Hold the scheduler's lock so a sync never uploads a half-written row.
        with self.scheduler.lock if self.scheduler else nullcontext():
            return super().flag(flag_data, flag_option, username)


def reviewed_images(folder: Path) -> list[tuple[Path, str]]:
    """(image, corrected label) for every flag in `folder`, skipping "not a bear" and missing files."""
    folder = Path(folder)
    found = []
    for table in folder.glob("*.csv"):
        with open(table, newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                if len(row) < 2 or not row[0] or row[-2] in ("flag", NOT_A_BEAR):
                    continue
                # Gradio stores absolute paths; after the folder moved (or came from the Hub dataset)
                # the image is found by its last parts: <input label>/<hash>/<file name>.
                image = Path(row[0])
                if not image.is_file():
                    image = folder.joinpath(*image.parts[-3:])
                if image.is_file():
                    found.append((image, row[-2]))
    return found


def fine_tune_on_reviews(
    model_path: Path, reviews: Path, data_dir: Path | None = None, epochs: int = 1, lr: float = 1e-4, batch_size: int = 8
) -> Learner:
    """Continue training the exported model on reviewed corrections (plus `data_dir`, if given,
    so it does not forget the rest). Export the result with `export.attach_ood` + `export.export`."""
    learn = export.load(model_path)
    vocab = list(learn.dls.vocab)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for label in vocab:
            (root / label).mkdir()
            if data_dir and (Path(data_dir) / label).is_dir():
                for image in (Path(data_dir) / label).iterdir():
                    (root / label / image.name).symlink_to(image.resolve())
        for i, (image, label) in enumerate(reviewed_images(reviews)):
            if label in vocab:
                shutil.copy(image, root / label / f"review_{i}{image.suffix}")
        report = data.verify_folder(root)
        learn.dls = data.dataloaders(root, report, size=input_size(learn), batch_size=batch_size)
        if list(learn.dls.vocab) != vocab:
            raise data.DataError(f"Reviewed data has labels {list(learn.dls.vocab)}, the model {vocab}.")
        learn.fine_tune(epochs, base_lr=lr)
        export.attach_ood(learn, learn.dls.train.items)
    return learn
