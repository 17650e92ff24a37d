"""Fast single-image (and batched) inference on an exported learner.

`learn.predict(img)` builds a DataLoader, runs the callback machinery and pushes fastai's tensor
subclasses through every layer. We apply the learner's own validation transforms (so the pixels,
and therefore the probabilities, are the same) and call the network directly. For the transforms
that `data.dataloaders` and `vision_learner` make, `PlainTransform` does the same in plain
PIL/torch without fastai's per-call dispatch (equal pixels: tests/test_model.py); other learners
go through fastai's own Pipelines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
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

from .images import ImageInput, open_image
from .network import network


@dataclass
class Prediction:
    label: str
    probabilities: dict[str, float]
    """Every class, in `vocab` order."""
    out_of_domain: bool
    ood_score: float
    """The pretrained network's ImageNet probability mass outside the classes that the training
    photos carry (`imagenet.ImageNetGuard`); out of domain above the threshold stored in model.pkl."""


def input_size(learn: Learner) -> int:
    """The side of the square the network sees, from the learner's own resize transform."""
    sizes = [getattr(t, "size", None) for t in learn.dls.valid.after_item.fs]
    return max(max(s) for s in sizes if s)


class PlainTransform:
    """fastai's validation-time `RandomResizedCrop` (squash-resize to size + val_xtra, then centre
    crop), `ToTensor`, `IntToFloatTensor`, aug_transforms' affine step (an identity resampling at
    validation time, which still moves pixels by ~1e-5) and `Normalize`, as the same PIL calls and
    torch operations."""

    def __init__(
        self, crop: RandomResizedCrop, to_float: IntToFloatTensor, affine: AffineCoordTfm | None, normalize: Normalize
    ):
        width, height = crop.size  # fastai keeps (width, height) here, as PIL does
        extra = math.ceil(max(width, height) * crop.val_xtra / 8) * 8
        self.resize_to = (width + extra, height + extra)
        left, top = (self.resize_to[0] - width) // 2, (self.resize_to[1] - height) // 2
        self.box = (left, top, left + width, top + height)
        self.resample = crop.mode
        self.div = to_float.div
        self.affine = affine
        self.mean, self.std = normalize.mean.cpu(), normalize.std.cpu()

    @classmethod
    def of(cls, learn: Learner) -> PlainTransform | None:
        """For a learner whose validation transforms are exactly these; None for any other."""
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
        return cls(item[0], batch[0], affine[0] if affine else None, batch[1])

    def __call__(self, pictures: Sequence[Image.Image]) -> torch.Tensor:
        crops = [np.asarray(picture.resize(self.resize_to, self.resample).crop(self.box)) for picture in pictures]
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


def _identity_when_valid(t) -> bool:
    """At validation time an `AffineCoordTfm` without a size samples with the identity matrix and
    no coordinate warp (fastai skips both when split_idx is 1)."""
    return isinstance(t, AffineCoordTfm) and t.size is None


class Predictor:
    """Wraps an exported learner (see `export`) for thread-safe, low-overhead prediction."""

    def __init__(self, learn: Learner, draft: bool = False, backend: str | None = None):
        self.learn = learn
        self.model = learn.model.eval().cpu()
        size = input_size(learn)
        # The out-of-domain guard, written by export.attach_ood: the pretrained ImageNet classifier,
        # folded into the network as a second output, and the ImageNet classes that count as in domain.
        state = getattr(learn, "ood_state", None)
        self.guard = state if state and state.get("kind") == "imagenet-mass" else None
        imagenet = (state["imagenet_weight"], state["imagenet_bias"]) if self.guard else None
        self.network = network(self.model, size, backend, imagenet)
        self.vocab: list[str] = list(learn.dls.vocab)
        # The validation-time transforms (split_idx=1): resize and centre crop, no augmentation.
        valid = learn.dls.valid
        self._after_item = Pipeline(valid.after_item.fs, split_idx=1)
        self._after_batch = Pipeline(valid.after_batch.fs, split_idx=1)
        self._plain = PlainTransform.of(learn)
        # Decoding a JPEG at reduced size is far cheaper for phone photos, but changes pixels
        # slightly compared with learn.predict; off unless asked for (BENCHMARKS.md measures it).
        self.draft_size = 2 * size if draft else None
        # All inference runs on one thread of our own: the fastai transforms keep per-call state
        # (not thread-safe), two cores gain nothing from parallel forward passes, and glibc gives
        # every thread that allocates activations its own memory arena, which Gradio's pool of
        # worker threads would otherwise multiply (BENCHMARKS.md, memory).
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    def decode(self, image: ImageInput) -> Image.Image:
        """An upright RGB picture, or `ImageError` with a message for the user."""
        return open_image(image, draft_size=self.draft_size)

    def preprocess(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Decode and transform exactly as the validation set was; returns a plain float batch."""
        return self.transform([self.decode(image) for image in images])

    def transform(self, pictures: Sequence[Image.Image]) -> torch.Tensor:
        """The validation-time transforms, on pictures that `decode` returned."""
        return self._worker.submit(self._transform, pictures).result()

    def _transform(self, pictures: Sequence[Image.Image]) -> torch.Tensor:
        if self._plain:
            return self._plain(pictures)
        return self.fastai_transform(pictures)

    def fastai_transform(self, pictures: Sequence[Image.Image]) -> torch.Tensor:
        """The same through fastai's Pipelines (the reference `PlainTransform` is tested against)."""
        items = [self._after_item(PILImage(picture)) for picture in pictures]
        return self._after_batch(TensorImage(torch.stack(items))).as_subclass(torch.Tensor)

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class probabilities, and the ImageNet probabilities the guard reads (None without a guard)."""
        return self._worker.submit(self._forward, batch).result()

    @torch.inference_mode()
    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        outputs = self.network(batch)
        return outputs[0], (outputs[1] if len(outputs) > 1 else None)

    def ood_scores(self, imagenet: torch.Tensor | None, n: int) -> torch.Tensor:
        """1 - the ImageNet probability mass on the in-domain classes (zeros without a guard)."""
        if self.guard is None or imagenet is None:
            return torch.zeros(n)
        return 1 - imagenet[:, self.guard["in_domain"]].sum(1)

    def predict_batch(self, images: Sequence[ImageInput]) -> list[Prediction]:
        return self.predict_decoded([self.decode(image) for image in images])

    def predict_decoded(self, pictures: Sequence[Image.Image]) -> list[Prediction]:
        """Like `predict_batch`, for pictures that `decode` returned (so they are not decoded twice)."""
        probs, imagenet = self.forward(self.transform(pictures))
        scores = self.ood_scores(imagenet, len(probs))
        threshold = self.guard["threshold"] if self.guard else float("inf")
        return [
            Prediction(
                label=self.vocab[int(p.argmax())],
                probabilities={c: float(v) for c, v in zip(self.vocab, p)},
                out_of_domain=bool(s > threshold),
                ood_score=float(s),
            )
            for p, s in zip(probs, scores)
        ]

    def predict(self, image: ImageInput) -> Prediction:
        return self.predict_batch([image])[0]
