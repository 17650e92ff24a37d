"""The standard validation-time transforms in plain PIL and torch: decoded pictures to the network's input batch,
without fastai.

`transforms.Transforms` builds a `PlainTransform` from a learner whose transforms are the ones `data.dataloaders`
and `vision_learner` make (equal pixels: tests/test_model.py); `served` keeps its parameters, so that a start with
a cached model runs it without importing fastai.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


@dataclass(frozen=True)
class Affine:
    """aug_transforms' affine step (fastai's `AffineCoordTfm`: flip, rotate, zoom...) at validation time: an identity
    resampling, which still moves pixels by ~1e-5."""

    mode: str
    pad_mode: str
    align_corners: bool


@dataclass(frozen=True, eq=False)
class PlainTransform:
    """fastai's validation-time `RandomResizedCrop` (squash-resize to size + val_xtra, then centre
    crop), `ToTensor`, `IntToFloatTensor`, aug_transforms' affine step and `Normalize`, as the same PIL calls and
    torch operations."""

    crop: tuple[int, int]
    """(width, height) of the centre crop, as fastai and PIL keep it."""
    val_xtra: float
    """The margin added before cropping, as a share of the crop's longer side."""
    resample: int
    """PIL's resampling filter for the resize."""
    div: float
    mean: torch.Tensor
    std: torch.Tensor
    """`Normalize`'s statistics, shaped to broadcast over the batch as fastai's are."""
    affine: Affine | None

    @property
    def size(self) -> int:
        """The side of the square the network sees."""
        return max(self.crop)

    @property
    def resize_to(self) -> tuple[int, int]:
        width, height = self.crop
        extra = math.ceil(max(width, height) * self.val_xtra / 8) * 8
        return width + extra, height + extra

    @property
    def box(self) -> tuple[int, int, int, int]:
        (width, height), (outer_width, outer_height) = self.crop, self.resize_to
        left, top = (outer_width - width) // 2, (outer_height - height) // 2
        return left, top, left + width, top + height

    def at(self, side: int) -> PlainTransform:
        """The same transform for a `side` x `side` input (the guard's, when it differs from the head's)."""
        return dataclasses.replace(self, crop=(side, side))

    def __call__(self, pictures: Sequence[Image.Image]) -> torch.Tensor:
        resize_to, box = self.resize_to, self.box
        crops = [np.asarray(picture.resize(resize_to, self.resample).crop(box)) for picture in pictures]
        batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous().float().div_(self.div)
        if self.affine is not None:
            identity = torch.eye(3)[None, :2].expand(len(batch), 2, 3)
            grid = F.affine_grid(identity, list(batch.shape), align_corners=self.affine.align_corners)
            batch = F.grid_sample(
                batch,
                grid,
                mode=self.affine.mode,
                padding_mode=self.affine.pad_mode,
                align_corners=self.affine.align_corners,
            )
        return (batch - self.mean) / self.std
