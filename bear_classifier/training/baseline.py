"""The lesson's rule: beat a simple baseline. Pixel similarity on small thumbnails.

Each class is summarised by its mean thumbnail; an image gets the class whose mean is nearest by
mean absolute difference. No learning beyond averaging, so any real model must do much better.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bear_classifier.model.images import open_image

THUMB = 32


def thumbnail(path: Path, size: int = THUMB) -> np.ndarray:
    """A `size`x`size` RGB thumbnail as floats in [0, 1]."""
    image = open_image(Path(path), draft_size=size).resize((size, size))
    return np.asarray(image, dtype=np.float32) / 255


class PixelSimilarity:
    """Nearest class-mean thumbnail by mean absolute difference."""

    def fit(self, paths: Sequence[Path], labels: Sequence[str]) -> PixelSimilarity:
        thumbs = np.stack([thumbnail(p) for p in paths])
        labels = np.asarray(labels)
        self.classes = sorted(set(labels))
        self.means = np.stack([thumbs[labels == c].mean(0) for c in self.classes])
        return self

    def predict(self, paths: Sequence[Path]) -> list[str]:
        thumbs = np.stack([thumbnail(p) for p in paths])
        distances = np.abs(thumbs[:, None] - self.means[None]).mean(axis=(2, 3, 4))
        return [self.classes[i] for i in distances.argmin(1)]

    def accuracy(self, paths: Sequence[Path], labels: Sequence[str]) -> float:
        return float(np.mean(np.asarray(self.predict(paths)) == np.asarray(labels)))


def baseline_accuracy(train: Sequence[Path], valid: Sequence[Path]) -> float:
    """Fit on `train`, score on `valid`; labels are the parent folder names."""
    model = PixelSimilarity().fit(train, [Path(p).parent.name for p in train])
    return model.accuracy(valid, [Path(p).parent.name for p in valid])
