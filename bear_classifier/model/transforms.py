"""The learner's validation-time transforms: decoded pictures to the network's input batch, the one object that
training, evaluation and serving share.

`learn.predict` and the validation set resize and centre-crop each photo, make floats of it and normalise it
through fastai's Pipelines. For the transforms that `data.dataloaders` and `vision_learner` make,
`pixels.PlainTransform` does the same in plain PIL/torch without fastai's per-call dispatch (equal pixels:
tests/test_model.py); other learners go through fastai's own Pipelines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from fastai.vision.all import (
    AffineCoordTfm,
    IntToFloatTensor,
    Learner,
    Normalize,
    PILImage,
    Pipeline,
    RandomResizedCrop,
    TensorImage,
    ToTensor,
)
from PIL import Image

from bear_classifier.model.pixels import Affine, PlainTransform


def input_size(learn: Learner) -> int:
    """The side of the square the network sees, from the learner's own resize transform."""
    sizes = [getattr(t, "size", None) for t in learn.dls.valid.after_item.fs]
    return max(max(s) for s in sizes if s)


@dataclass(frozen=True)
class Transforms:
    """Decoded pictures (`images.open_image`'s) to the network's input batch, exactly as the learner's
    validation set was transformed: `plain` when the learner's transforms are the standard ones, else
    fastai's Pipelines. The plain path keeps no per-call state (thread-safe); fastai's Pipelines do, so
    one caller at a time for a learner without `plain`."""

    size: int
    """The side of the square the network sees."""
    plain: PlainTransform | None
    """The fast path; None for a learner whose validation transforms are not the standard ones."""
    after_item: Pipeline
    after_batch: Pipeline
    """fastai's own validation Pipelines: the path for other learners, and the reference for `plain`."""

    @classmethod
    def of(cls, learn: Learner) -> Transforms:
        """The learner's validation-time transforms (split_idx=1): resize and centre crop, no augmentation."""
        valid = learn.dls.valid
        return cls(
            input_size(learn),
            plain_transform(learn),
            Pipeline(valid.after_item.fs, split_idx=1),
            Pipeline(valid.after_batch.fs, split_idx=1),
        )

    def __call__(self, pictures: Sequence[Image.Image], size: int | None = None) -> torch.Tensor:
        """The batch (N x 3 x side x side); `size`: at another input size (needs `plain`)."""
        if size is not None and size != self.size:
            return self.at(size)(pictures)
        return self.plain(pictures) if self.plain else self.fastai(pictures)

    def at(self, size: int) -> PlainTransform:
        """The same transforms for a `size` x `size` input (the guard's, when it differs from the head's)."""
        if self.plain is None:
            raise ValueError(f"{size} px instead of the learner's {self.size} px needs the standard transforms")
        return self.plain.at(size)

    def fastai(self, pictures: Sequence[Image.Image]) -> torch.Tensor:
        """The same through fastai's Pipelines (the reference `PlainTransform` is tested against)."""
        items = [self.after_item(PILImage(picture)) for picture in pictures]
        return self.after_batch(TensorImage(torch.stack(items))).as_subclass(torch.Tensor)


def plain_transform(learn: Learner) -> PlainTransform | None:
    """The learner's validation transforms as a `PlainTransform`, when they are exactly the standard ones; None for
    any other."""
    valid = learn.dls.valid
    item = [t for t in valid.after_item.fs if t.split_idx != 0]  # split_idx 0: training only
    # aug_transforms' affine part (AffineCoordTfm: flip, rotate, zoom...) also runs at validation
    # time, with the identity matrix; the lighting part is training-only.
    affine = [t for t in valid.after_batch.fs if _identity_when_valid(t)]
    batch = [t for t in valid.after_batch.fs if t.split_idx != 0 and not _identity_when_valid(t)]
    if (
        [type(t) for t in item] != [RandomResizedCrop, ToTensor]
        or len(affine) > 1
        or [type(t) for t in batch] != [IntToFloatTensor, Normalize]
    ):
        return None
    crop, to_float, normalize = item[0], batch[0], batch[1]
    return PlainTransform(
        crop=tuple(crop.size),  # fastai keeps (width, height) here, as PIL does
        val_xtra=crop.val_xtra,
        resample=int(crop.mode),
        div=to_float.div,
        mean=normalize.mean.cpu(),
        std=normalize.std.cpu(),
        affine=Affine(affine[0].mode, affine[0].pad_mode, affine[0].align_corners) if affine else None,
    )


def _identity_when_valid(t) -> bool:
    """At validation time an `AffineCoordTfm` without a size samples with the identity matrix and
    no coordinate warp (fastai skips both when split_idx is 1)."""
    return isinstance(t, AffineCoordTfm) and t.size is None
