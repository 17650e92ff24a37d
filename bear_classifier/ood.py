"""Out-of-domain detection: "is this photo like anything the model was trained on?"

A classifier trained on three kinds of bear always answers with a bear, even for a raccoon or a
coffee cup (the lesson's campsite warning). We keep the training images' feature vectors (the
backbone's average- and max-pooled output, which still knows much of what ImageNet taught it) and
score a new image by its cosine distance to its nearest neighbours there. On held-out images this
separates bears from everything else far better than the fine-tuned head's own features or its
softmax confidence (BENCHMARKS.md). The threshold is calibrated on the training set itself (leave-one-out), so that a chosen
share of training images would be flagged; held-out measurements live in BENCHMARKS.md.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class FeatureDistance:
    """k-nearest-neighbour cosine distance to the training features, with a calibrated threshold."""

    def __init__(self, bank: torch.Tensor, threshold: float, k: int = 5):
        self.bank = F.normalize(bank.float(), dim=1).half()  # half precision: 2 MB in model.pkl for ~400 images
        self.threshold = float(threshold)
        self.k = k

    @classmethod
    def calibrate(cls, features: torch.Tensor, quantile: float = 0.99, k: int = 5) -> FeatureDistance:
        """Fit on training features; `quantile` of their leave-one-out scores becomes the threshold."""
        detector = cls(features, threshold=float("inf"), k=k)
        scores = detector.score(features, exclude_self=True)
        detector.threshold = float(torch.quantile(scores, quantile))
        return detector

    def state(self) -> dict:
        """Plain tensors and numbers: stored in model.pkl so that loading it needs only fastai and
        timm, not this package."""
        return {"bank": self.bank, "threshold": self.threshold, "k": self.k}

    @classmethod
    def from_state(cls, state: dict) -> FeatureDistance:
        return cls(state["bank"], state["threshold"], state["k"])

    def score(self, features: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
        """Mean cosine distance to the k nearest training features (0 = seen before, 2 = opposite)."""
        similarity = F.normalize(features.float(), dim=1) @ self.bank.float().T
        if exclude_self:  # when scoring the bank itself, an image is not its own neighbour
            similarity.fill_diagonal_(-1.0)
        k = min(self.k, self.bank.shape[0] - int(exclude_self))
        return 1 - similarity.topk(k, dim=1).values.mean(1)

    def is_out(self, features: torch.Tensor) -> torch.Tensor:
        return self.score(features) > self.threshold
