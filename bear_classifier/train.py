"""Fine-tuning, error analysis and export: the training half of the lesson, as plain functions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless by default; the notebook still shows figures inline
import matplotlib.pyplot as plt
import pandas as pd
import torch
from fastai.vision.all import (
    BnFreeze,
    ClassificationInterpretation,
    DataLoaders,
    Learner,
    accuracy,
    error_rate,
    vision_learner,
)

from .weights import DEFAULT_ARCH, pretrained_overlay

RECIPES = {
    "linear_probe": "linear probe: the head trained with `freeze()` + `fit_one_cycle({epochs})` on the frozen "
    "pretrained body (BatchNorm statistics frozen too: `train_bn=False`, `BnFreeze`)",
    "fine_tune": "the course default, `fine_tune({epochs})`",
}
"""The notebook's `recipe` parameter -> how the model card describes it."""


@dataclass
class TrainResult:
    learn: Learner
    lr: float
    accuracy: float


def device() -> torch.device:
    """The GPU when there is one, the CPU otherwise: the same code runs on both."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_learner(
    dls: DataLoaders, arch: str = DEFAULT_ARCH, pretrained: bool = True, frozen_body: bool = False
) -> Learner:
    """A course-style `vision_learner`; any timm name works online, the default also offline.

    `frozen_body`: for a linear probe, the body's BatchNorm layers are not trained either
    (`train_bn=False`) and keep their pretrained statistics (`BnFreeze`), so while the learner is
    frozen its body stays exactly the pretrained network."""
    dls.to(device())
    overlay = pretrained_overlay(arch) if pretrained else {}
    frozen = {"train_bn": False, "cbs": [BnFreeze()]} if frozen_body else {}
    return vision_learner(dls, arch, pretrained=pretrained, metrics=[accuracy, error_rate], **overlay, **frozen)


def find_lr(learn: Learner, num_it: int = 50) -> float:
    """The learning rate from `lr_find` (valley); `num_it` keeps it short on a CPU."""
    return float(learn.lr_find(num_it=num_it, show_plot=False).valley)


def fine_tune(learn: Learner, epochs: int, lr: float | None = None, freeze_epochs: int = 1) -> TrainResult:
    lr = lr if lr is not None else find_lr(learn)
    learn.fine_tune(epochs, base_lr=lr, freeze_epochs=freeze_epochs)
    return TrainResult(learn, lr, validation_accuracy(learn))


def linear_probe(learn: Learner, epochs: int, lr: float | None = None) -> TrainResult:
    """Train the head only, on the frozen pretrained body (a learner from `make_learner(...,
    frozen_body=True)`): `freeze` + `fit_one_cycle`. The body keeps what pretraining knew, and one
    forward pass gives both our head's and the ImageNet classifier's answers (`imagenet`)."""
    learn.freeze()
    lr = lr if lr is not None else find_lr(learn)
    learn.fit_one_cycle(epochs, lr)
    return TrainResult(learn, lr, validation_accuracy(learn))


def validation_accuracy(learn: Learner) -> float:
    preds, targets = learn.get_preds(dl=learn.dls.valid)
    return float((preds.argmax(1) == targets).float().mean())


def save_confusion_matrix(interp: ClassificationInterpretation, path: Path) -> Path:
    """The confusion matrix as a PNG: counts only, no photos, so it may be published."""
    interp.plot_confusion_matrix(figsize=(4, 4))
    return _save_figure(path)


def save_top_losses_plot(interp: ClassificationInterpretation, path: Path, k: int = 9) -> Path:
    """The worst-predicted validation photos as a PNG, for looking at. It shows training photos:
    keep it out of the repo and the Hub when their licences are unknown."""
    interp.plot_top_losses(min(k, len(interp.losses)), nrows=3, figsize=(9, 9))
    return _save_figure(path)


def top_losses_table(interp: ClassificationInterpretation, k: int | None = None) -> pd.DataFrame:
    """The headless cleaner: validation files sorted by loss, with label, prediction and confidence.

    Review the CSV, then move or delete files in the data folder and retrain.
    """
    losses, idxs = interp.top_losses(k)
    preds, targets = interp.learn.get_preds(dl=interp.dl)
    items, vocab = interp.dl.items, interp.vocab
    return pd.DataFrame(
        {
            "file": [str(items[i]) for i in idxs],
            "label": [vocab[int(targets[i])] for i in idxs],
            "predicted": [vocab[int(preds[i].argmax())] for i in idxs],
            "confidence": [float(preds[i].max()) for i in idxs],
            "loss": [float(v) for v in losses],
        }
    )


def _save_figure(path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.gcf().savefig(path, bbox_inches="tight", dpi=100)
    plt.close("all")
    return path
