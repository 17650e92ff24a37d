"""Fast single-image (and batched) inference on an exported learner.

`learn.predict(img)` builds a DataLoader, runs the callback machinery and pushes fastai's tensor
subclasses through every layer. We reuse the learner's own validation transforms (so the pixels,
and therefore the probabilities, are the same) and call the network directly.
"""
from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from fastai.vision.all import Learner, PILImage, Pipeline, TensorImage
from PIL import Image

from .images import ImageInput, open_image
from .network import network
from .ood import FeatureDistance


@dataclass
class Prediction:
    label: str
    probabilities: dict[str, float]
    """Every class, in `vocab` order."""
    out_of_domain: bool
    ood_score: float


def input_size(learn: Learner) -> int:
    """The side of the square the network sees, from the learner's own resize transform."""
    sizes = [getattr(t, "size", None) for t in learn.dls.valid.after_item.fs]
    return max(max(s) for s in sizes if s)


class Predictor:
    """Wraps an exported learner (see `export`) for thread-safe, low-overhead prediction."""

    def __init__(self, learn: Learner, draft: bool = False, backend: str | None = None):
        self.learn = learn
        self.model = learn.model.eval().cpu()
        size = input_size(learn)
        self.network = network(self.model, size, backend)
        self.vocab: list[str] = list(learn.dls.vocab)
        state = getattr(learn, "ood_state", None)  # written by export.attach_ood
        self.ood = FeatureDistance.from_state(state) if state else None
        # The validation-time transforms (split_idx=1): resize and centre crop, no augmentation.
        valid = learn.dls.valid
        self._after_item = Pipeline(valid.after_item.fs, split_idx=1)
        self._after_batch = Pipeline(valid.after_batch.fs, split_idx=1)
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
        items = [self._after_item(PILImage(picture)) for picture in pictures]
        return self._after_batch(TensorImage(torch.stack(items))).as_subclass(torch.Tensor)

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class probabilities, and the backbone's pooled features (the head's input) that the
        out-of-domain detector compares with the training images'."""
        return self._worker.submit(self._forward, batch).result()

    @torch.inference_mode()
    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.network(batch)

    def predict_batch(self, images: Sequence[ImageInput]) -> list[Prediction]:
        return self.predict_decoded([self.decode(image) for image in images])

    def predict_decoded(self, pictures: Sequence[Image.Image]) -> list[Prediction]:
        """Like `predict_batch`, for pictures that `decode` returned (so they are not decoded twice)."""
        probs, features = self.forward(self.transform(pictures))
        scores = self.ood.score(features) if self.ood else torch.zeros(len(probs))
        threshold = self.ood.threshold if self.ood else float("inf")
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

    def features_of(self, images: Sequence[ImageInput], batch_size: int = 32) -> torch.Tensor:
        """Pooled backbone features of many images, a batch at a time."""
        chunks = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
        return torch.cat([self.forward(self.preprocess(chunk))[1] for chunk in chunks])
