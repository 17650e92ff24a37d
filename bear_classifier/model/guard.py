"""The out-of-domain guard as model.pkl carries it and the app runs it: its state and its score, in one place.

`imagenet` fits it on the training photos (which ImageNet classes are in domain, the threshold); the learner
stores `Guard.to_state()` as `learn.ood_state`, plain tensors and numbers, so that a plain `load_learner` needs
only fastai and timm; `predictor.Predictor` reads it back with `Guard.from_state`. A leaf: torch only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

KIND = "imagenet-mass"
"""The one kind of guard there is; a model.pkl whose state names another has no guard the app can run."""


@dataclass
class Guard:
    """Out of domain when the ImageNet probability mass on the in-domain classes is too low."""

    in_domain: list[int]
    """ImageNet class indices that the training photos carry."""
    threshold: float
    """On the score `1 - mass`: flagged when the score is above it."""
    quantile: float
    """The quantile of the training photos' scores that set the threshold."""
    size: int | None = None
    """The input size of the pass it reads; None: the learner's own (one pass gives answer and guard)."""
    imagenet_weight: torch.Tensor | None = None
    """The learner's ImageNet classifier (on the body's features), folded into the network as a second output."""
    imagenet_bias: torch.Tensor | None = None

    def score(self, probabilities: torch.Tensor) -> torch.Tensor:
        """Per row of ImageNet probabilities: 1 - their mass on the in-domain classes."""
        return 1 - probabilities[:, self.in_domain].sum(1)

    def threshold_on(self, probabilities: torch.Tensor) -> float:
        """The threshold `quantile` sets on these photos' scores: the training photos' fit it (`imagenet`), read
        through the network that serves (fp32 or int8 graphs, `quantize`)."""
        return float(torch.quantile(self.score(probabilities), self.quantile))

    def is_out(self, probabilities: torch.Tensor) -> torch.Tensor:
        return self.score(probabilities) > self.threshold

    def to_state(self) -> dict[str, Any]:
        """What model.pkl stores: plain tensors and numbers (no class of this package)."""
        return {
            "kind": KIND,
            "imagenet_weight": self.imagenet_weight,
            "imagenet_bias": self.imagenet_bias,
            "in_domain": torch.tensor(self.in_domain, dtype=torch.long),
            "threshold": float(self.threshold),
            "quantile": float(self.quantile),
            "size": self.size,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None) -> Guard | None:
        """The guard a learner's `ood_state` holds; None when it holds none (or one of another kind)."""
        if not state or state.get("kind") != KIND:
            return None
        return cls(
            in_domain=[int(c) for c in state["in_domain"]],
            threshold=float(state["threshold"]),
            quantile=float(state["quantile"]),
            size=state.get("size"),
            imagenet_weight=state["imagenet_weight"],
            imagenet_bias=state["imagenet_bias"],
        )
