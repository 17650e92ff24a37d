"""Writing `model.pkl` and loading it back safely.

fastai 2.8 exports with cloudpickle: the file can only be loaded with the same Python minor version
and compatible fastai/timm/torch. We record those versions next to the model, and we verify a
SHA-256 before unpickling, because unpickling runs code.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import pathlib
import platform
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from fastai.vision.all import Learner, load_learner

from .ood import FeatureDistance
from .predictor import Predictor

PINNED = ("fastai", "fastcore", "fasttransform", "plum-dispatch", "torch", "torchvision", "timm", "pillow")


class ModelFileError(RuntimeError):
    """model.pkl is missing, altered, or cannot be loaded in this environment."""


def library_versions() -> dict[str, str]:
    """Versions that must match between the exporting and the loading environment."""
    versions = {"python": platform.python_version()}
    versions.update({name: importlib.metadata.version(name) for name in PINNED})
    return versions


def attach_ood(learn: Learner, train_items: Sequence[Path], quantile: float = 0.99) -> FeatureDistance:
    """Calibrate the out-of-domain detector on the training images and store its state in the
    learner, so that it travels inside model.pkl."""
    features = Predictor(learn).features_of(train_items)
    detector = FeatureDistance.calibrate(features, quantile=quantile)
    learn.ood_state = detector.state()
    return detector


def export(learn: Learner, path: Path) -> str:
    """Export a CPU learner to `path`; returns its SHA-256."""
    learn.dls.cpu()
    learn.model.cpu()
    learn.export(Path(path).absolute())
    return sha256(path)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load(path: Path, expected_sha256: str | None = None) -> Learner:
    """`load_learner` on the CPU, after checking the file's SHA-256 when one is given."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"No model file at {path}. Train one (training.ipynb) or set BEAR_MODEL_REPO.")
    if expected_sha256 and sha256(path) != expected_sha256.lower():
        raise ModelFileError(f"{path} does not match the expected SHA-256 {expected_sha256}: refusing to unpickle it.")
    import timm  # noqa: F401  the pickle needs it; a missing import otherwise shows as fastai #4115's 'res' error

    with _posix_paths_on_windows():
        try:
            return load_learner(path, cpu=True)
        except (AttributeError, ModuleNotFoundError, TypeError) as e:
            raise ModelFileError(
                f"{path} could not be loaded ({e}). It was probably written by other library versions: "
                f"install the ones recorded in its model card (this is Python {platform.python_version()})."
            ) from e


@contextmanager
def _posix_paths_on_windows() -> Iterator[None]:
    """A learner exported on Linux holds PosixPath objects, which Windows cannot instantiate."""
    if sys.platform != "win32":
        yield
        return
    posix = pathlib.PosixPath
    pathlib.PosixPath = pathlib.WindowsPath  # type: ignore[misc]
    try:
        yield
    finally:
        pathlib.PosixPath = posix  # type: ignore[misc]
