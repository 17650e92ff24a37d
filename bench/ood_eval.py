"""How well the out-of-domain flag works, on images it was not calibrated on.

The detector inside model.pkl was calibrated on the training split only. We count:
- real bears wrongly flagged: the validation split (same seed as training, never seen in calibration);
- non-bear photos flagged: scikit-image's sample photos and Tux Paint's photo and clip-art stamps
  (every category but bears), flattened onto white as the app does.
Beside it, the simple baseline: flag when the top softmax probability is low, with its threshold
set to the same 1% false-flag rate on the training images.

    python -m bench.ood_eval
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bear_classifier import data, serving
from bear_classifier.predictor import Predictor
from bear_classifier.settings import Settings

BEARS = serving.ROOT.parent / "shared" / "data" / "bears"
STAMPS = Path("/usr/share/tuxpaint/stamps")
SKIMAGE_PHOTOS = [
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "stereo_motorcycle",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "camera",
    "coins",
    "brick",
    "grass",
    "gravel",
    "moon",
    "page",
    "text",
    "horse",
    "cell",
    "clock",
    "colorwheel",
    "logo",
]


@dataclass
class Rates:
    name: str
    images: int
    flagged_ours: float
    flagged_softmax_baseline: float


def skimage_photos() -> list[Image.Image]:
    from skimage import data as samples

    photos = []
    for name in SKIMAGE_PHOTOS:
        array = getattr(samples, name)()
        if isinstance(array, tuple):  # stereo_motorcycle: (left, right, disparity)
            array = array[0]
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        photos.append(Image.fromarray(array))
    return photos


def stamp_paths(limit: int = 300, seed: int = 0) -> list[Path]:
    paths = [p for p in STAMPS.rglob("*.png") if "bears" not in p.parts]
    return sorted(random.Random(seed).sample(sorted(paths), min(limit, len(paths))))


def bear_split(size: int) -> tuple[list[Path], list[Path]]:
    """The training run's split (seed 42, 20%), recomputed from the same folder."""
    report = data.verify_folder(BEARS)
    dls = data.dataloaders(BEARS, report, size=size)
    return list(dls.train.items), list(dls.valid.items)


def scores(predictor: Predictor, images: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(our OOD flags, top softmax probability) for each image."""
    flags, confidence = [], []
    for start in range(0, len(images), 32):
        predictions = predictor.predict_batch(images[start : start + 32])
        flags += [p.out_of_domain for p in predictions]
        confidence += [max(p.probabilities.values()) for p in predictions]
    return torch.tensor(flags, dtype=torch.float), torch.tensor(confidence)


def measure() -> list[Rates]:
    predictor, facts = serving.load(Settings())
    train, valid = bear_split(facts.image_size)
    _, train_confidence = scores(predictor, train)
    softmax_threshold = float(torch.quantile(train_confidence, 1 - facts.ood_quantile))

    rows = []
    for name, images in [
        ("bear photos, validation split (should not be flagged)", valid),
        ("scikit-image sample photos (not bears)", skimage_photos()),
        ("Tux Paint stamps, all but bears (not bears)", stamp_paths()),
        ("the app's non-bear examples", [p for p in (serving.ROOT / "examples").glob("*.jpg") if "bear" not in p.name]),
    ]:
        flags, confidence = scores(predictor, images)
        baseline = (confidence < softmax_threshold).float()
        rows.append(Rates(name, len(images), float(flags.mean()), float(baseline.mean())))
    return rows


def table(rows: list[Rates]) -> str:
    lines = [
        "| images | count | flagged by our feature-distance detector | flagged by the softmax baseline |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r.name} | {r.images} | {r.flagged_ours:.1%} | {r.flagged_softmax_baseline:.1%} |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(measure()))
