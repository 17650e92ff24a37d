"""Labelled image folders (`<root>/<label>/*.jpg`): checking them, turning them into fastai DataLoaders, and the
split a training run made (written beside its model, read by `evaluate`); the external folder's two halves."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from fastai.vision.all import (
    CategoryBlock,
    DataBlock,
    DataLoaders,
    ImageBlock,
    RandomResizedCrop,
    RandomSplitter,
    aug_transforms,
    defaults,
    get_image_files,
    parent_label,
)

from bear_classifier.model.images import ImageError, open_image

MIN_SIDE = 32
"""Images smaller than this on either side carry too little to learn from (icons, tracking pixels)."""


SEED = 42  # the validation split's seed by default: training.ipynb's `seed`, evaluate's --seed
VALID_PCT = 0.2  # the share of photos held out for validation


SELECTION_DIGITS = "01234567"
"""An external photo whose SHA-256 (hex) starts with one of these is in the selection half; the rest, the test half."""
HALVES = ("selection", "test")


def external_half(path: Path) -> str:
    """ "selection" or "test": which half of an external folder `path` is in, by the SHA-256 of its bytes (the one its
    manifest.csv lists). The selection half may choose (recipe, WiSE-FT share, size, guard); the test half only
    measures. The one place the split is written: `evaluate.external_sets` and the notebook's `select_dir` read it."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return HALVES[0] if digest[0] in SELECTION_DIGITS else HALVES[1]


class DataError(ValueError):
    """The data set cannot be trained on; the message says what to fix."""


@dataclass
class DataReport:
    """What `verify_folder` kept and dropped, for the notebook and the model card."""

    counts: Counter = field(default_factory=Counter)
    dropped: dict[str, list[str]] = field(default_factory=dict)

    def drop(self, reason: str, path: Path) -> None:
        self.dropped.setdefault(reason, []).append(str(path))

    def __str__(self) -> str:
        lines = [f"{label:>10}: {n} images" for label, n in sorted(self.counts.items())]
        lines.append(f"{'total':>10}: {sum(self.counts.values())} images")
        for reason, paths in sorted(self.dropped.items()):
            lines.append(f"dropped {len(paths)} ({reason})")
        return "\n".join(lines)


def verify_folder(root: Path, delete: bool = False, min_side: int = MIN_SIDE) -> DataReport:
    """Check every file under `root/<label>/`: it must decode fully, be big enough, and not repeat.

    Bad files are counted in the report (and removed when `delete`, for freshly downloaded data).
    Raises `DataError` when fewer than two labels with images remain.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Data folder {root} does not exist or is not a folder.")
    report, seen = DataReport(), set()
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        report.counts[label_dir.name] = 0
        for path in sorted(p for p in label_dir.rglob("*") if p.is_file() or p.is_symlink()):
            reason = _problem(path, seen, min_side)
            if reason:
                report.drop(reason, path)
                if delete:
                    path.unlink()
            else:
                report.counts[label_dir.name] += 1
    _check_trainable(root, report)
    return report


def _problem(path: Path, seen: set[str], min_side: int) -> str | None:
    try:
        data = path.read_bytes()
        image = open_image(data)
    except OSError:  # permissions, a dangling link, a vanished network mount
        return "unreadable"
    except ImageError:
        return "not a readable image"
    if min(image.size) < min_side:
        return f"smaller than {min_side}px"
    digest = hashlib.md5(data).hexdigest()
    if digest in seen:
        return "exact duplicate"
    seen.add(digest)
    return None


def _check_trainable(root: Path, report: DataReport) -> None:
    empty = [label for label, n in report.counts.items() if n == 0]
    labelled = [label for label, n in report.counts.items() if n > 0]
    if len(labelled) < 2:
        raise DataError(
            f"{root} needs at least two label folders with images (found {labelled or 'none'}; "
            f"empty: {empty or 'none'}). Layout: {root}/<label>/<image>."
        )


def bad_files(report: DataReport) -> set[str]:
    return {p for paths in report.dropped.values() for p in paths}


def image_files(root: Path, report: DataReport, max_per_class: int | None = None) -> list[Path]:
    """The images `verify_folder` kept; the first `max_per_class` of each label for quick runs."""
    dropped = bad_files(report)
    kept, taken = [], Counter()
    for path in sorted(get_image_files(root)):  # sorted: the seeded split must not depend on the file system
        if str(path) not in dropped and (max_per_class is None or taken[path.parent.name] < max_per_class):
            kept.append(path)
            taken[path.parent.name] += 1
    return kept


SPLIT_FILE = "split.json"


@dataclass(frozen=True)
class WrittenSplit:
    """The split a training run made, as it wrote it beside its model.pkl (`write_split`): `evaluate` measures on it,
    whatever the notebook's cell 9 did (made again from the seed, it would trust that the two agree)."""

    train: list[Path]
    valid: list[Path]
    seed: int
    valid_pct: float


def write_split(
    folder: Path,
    data_dir: Path,
    train: Sequence[Path],
    valid: Sequence[Path],
    *,
    seed: int,
    valid_pct: float,
    model_sha256: str,
) -> Path:
    """The split beside the model.pkl it trained (`SPLIT_FILE` in `folder`), for that file only (`model_sha256`). The
    photos are named within `data_dir`, so the split holds wherever they are copied (a Colab run, measured at home)."""

    def names(paths: Sequence[Path]) -> list[str]:
        return [Path(p).relative_to(data_dir).as_posix() for p in paths]

    record = {
        "model_sha256": model_sha256,
        "seed": seed,
        "valid_pct": valid_pct,
        "train": names(train),
        "valid": names(valid),
    }
    path = Path(folder) / SPLIT_FILE
    path.write_text(json.dumps(record, indent=0))
    return path


def read_split(folder: Path, data_dir: Path, model_sha256: str) -> WrittenSplit | None:
    """The split written beside the model.pkl whose SHA-256 is `model_sha256`, as paths under `data_dir`; None when
    `folder` holds none. A split written for another file (a run that stopped before its export, another run's
    output in the same folder) is an error: it would measure this model on someone else's split."""
    path = Path(folder) / SPLIT_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("model_sha256") != model_sha256:
        raise DataError(
            f"{path} was written for another model.pkl (SHA-256 {str(record.get('model_sha256'))[:12]}…, not "
            f"{model_sha256[:12]}…). Delete it to measure on the split made again from the seed, or measure the model "
            "its run exported."
        )
    train, valid = ([Path(data_dir) / name for name in record[part]] for part in ("train", "valid"))
    missing = [photo for photo in train + valid if not photo.is_file()]
    if missing:
        raise DataError(
            f"{path} names {len(missing)} photos missing from {data_dir}, e.g. {missing[0]}: pass --data "
            "the folder that run trained on."
        )
    return WrittenSplit(train, valid, record["seed"], record["valid_pct"])


def dataloaders(
    root: Path,
    report: DataReport,
    size: int = 224,
    valid_pct: float = VALID_PCT,
    seed: int = SEED,
    batch_size: int = 32,
    num_workers: int | None = None,
    max_per_class: int | None = None,
) -> DataLoaders:
    """fastai DataLoaders as in the course: seeded split, RandomResizedCrop and `aug_transforms`.

    Everything in here is importable from fastai or this package, so an exported learner never
    depends on code that lived only in a notebook.
    """
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        splitter=RandomSplitter(valid_pct=valid_pct, seed=seed),
        get_y=parent_label,
        item_tfms=RandomResizedCrop(size, min_scale=0.5),
        batch_tfms=aug_transforms(),
    )
    if num_workers is None:  # fastai's default (every core) feeds a GPU; on a CPU the workers only compete with it
        num_workers = defaults.cpus if torch.cuda.is_available() else 0
    dls = block.dataloaders(image_files(root, report, max_per_class), bs=batch_size, num_workers=num_workers)
    if len(dls.valid_ds) == 0:
        raise DataError(f"Too few images for a {valid_pct:.0%} validation split: add images.")
    if len(dls.train) == 0:
        raise DataError(f"{len(dls.train_ds)} training images do not fill one batch of {batch_size}: lower batch_size.")
    return dls
