"""What both engines of `classify` share (the local one and `classify_ray`): the usage error, a photo
file's bytes, and the model as the app loads it. Neither engine imports the other's module: both import this one
(which imports `images` and `settings`; `predictor` for its types; and `serving`, when the model is loaded)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bear_classifier.model.images import ImageError
from bear_classifier.settings import Settings

if TYPE_CHECKING:
    from bear_classifier.model.predictor import Predictor


class UsageError(ValueError):
    """A command-line argument we cannot use; the message says which and why."""


def is_uri(path: str) -> bool:
    """Object storage (s3://, gs://, ...): only the Ray engine reads it, with Ray's readers."""
    return "://" in path


def checked_bytes(data: bytes) -> bytes | ImageError:
    """A file's bytes for `open_image`, or why not (both engines: their rows must be the same)."""
    return data if data else ImageError("The file is empty.")


def read_file(path: str) -> bytes | ImageError:
    try:
        return checked_bytes(Path(path).read_bytes())
    except OSError as e:
        return ImageError(f"Could not read the file: {e.strerror}.")


def load_predictor(settings: Settings) -> Predictor:
    """The model as the app loads it: model.pkl, or a Hub repo pinned to a commit (`serving.load`)."""
    from bear_classifier import serving  # here: the decoding workers import `classify`, and a worker needs no torch

    return serving.load(settings)[0]
