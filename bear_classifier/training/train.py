"""Training and error analysis, as plain functions that training.ipynb calls: its recipes' parts (the zero-shot head,
the linear probe, the distillation that keeps the ImageNet reading while fine-tuning, WiSE-FT), the confusion matrix
and top losses (`export` writes the model file). The notebook's cells hold the recipes themselves."""

from __future__ import annotations

import inspect
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless by default; the notebook still shows figures inline
import matplotlib.pyplot as plt
import pandas as pd
import torch
from fastai.vision.all import (
    BnFreeze,
    Callback,
    ClassificationInterpretation,
    DataLoaders,
    Learner,
    Normalize,
    accuracy,
    error_rate,
    set_seed,
    vision_learner,
)

from bear_classifier.model import modelfile
from bear_classifier.model.transforms import input_size
from bear_classifier.training import data, imagenet
from bear_classifier.web import feedback

COURSE_LR = inspect.signature(Learner.fine_tune).parameters["base_lr"].default
"""fastai's own default learning rate of `fine_tune` (2e-3): the course's recipe at the course's settings."""


@dataclass
class TrainResult:
    learn: Learner
    lr: float | None
    """None when nothing was trained (`zero_shot`)."""
    accuracy: float


def device() -> torch.device:
    """The GPU when there is one, the CPU otherwise: the same code runs on both."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def same_start(dls: DataLoaders, seed: int) -> None:
    """The random state each recipe trains from, whichever recipes trained before it: the global generators and
    every loader's shuffling (a loader keeps its own generator, which each epoch moves on). Without it, the course's
    recipe run alone and the same recipe after the others were two different trainings (38/39 against 32/39 on a
    fork's selection photos)."""
    set_seed(seed, reproducible=True)
    for loader in dls.loaders:
        loader.rng = random.Random(seed)


def make_learner(
    dls: DataLoaders, arch: str = imagenet.DEFAULT_ARCH, pretrained: bool = True, frozen_body: bool = False
) -> Learner:
    """A course-style `vision_learner`; any timm name works online, the default also offline.

    `frozen_body`: for a linear probe, the body's BatchNorm layers are not trained either
    (`train_bn=False`) and keep their pretrained statistics (`BnFreeze`), so while the learner is
    frozen its body stays exactly the pretrained network."""
    dls.to(device())
    overlay = imagenet.pretrained_overlay(arch) if pretrained else {}
    frozen = {"train_bn": False, "cbs": [BnFreeze()]} if frozen_body else {}
    return vision_learner(dls, arch, pretrained=pretrained, metrics=[accuracy, error_rate], **overlay, **frozen)


def find_lr(learn: Learner, num_it: int = 50) -> float:
    """The learning rate from `lr_find` (valley); `num_it` keeps it short on a CPU."""
    return float(learn.lr_find(num_it=num_it, show_plot=False).valley)


def linear_probe(learn: Learner, epochs: int, lr: float | None = None) -> TrainResult:
    """Train the head only, on the frozen pretrained body (a learner from `make_learner(...,
    frozen_body=True)`): `freeze` + `fit_one_cycle`. The body keeps what pretraining knew, and one
    forward pass gives both our head's and the ImageNet classifier's answers (`imagenet`)."""
    learn.freeze()
    lr = lr if lr is not None else find_lr(learn)
    learn.fit_one_cycle(epochs, lr)
    return TrainResult(learn, lr, validation_accuracy(learn))


def zero_shot(learn: Learner, mapping) -> TrainResult:
    """No training: the head becomes the pretrained ImageNet classifier read through `mapping`
    (an `imagenet.ZeroShotMapping` found from the training photos), on a learner from
    `make_learner(..., frozen_body=True)`."""
    learn.model[1] = imagenet.zero_shot_head(learn, mapping).to(device())
    learn.opt = None  # the optimizer held the old head's parameters; fastai makes a new one when needed
    return TrainResult(learn, None, validation_accuracy(learn))


class DistilImageNet(Callback):
    """Fine-tuning that keeps the ImageNet reading (LwF, Li & Hoiem 2016): adds to the loss the KL divergence
    between the pretrained network's 1000-class output (`teacher`) and the zero-shot head's own ImageNet
    classifier output, on the same augmented batch, at temperature `temperature`. The teacher sees the batch
    resized to the size it was trained at, so a student trained at a larger size learns the teacher's sharp
    ImageNet reading rather than the flat one the pretrained network gives there, which the guard reads (at
    320 px: all polar bears flagged, BENCHMARKS.md "Issue 18"). Also
    keeps every BatchNorm layer's statistics frozen (the body stays the pretrained one there), and the head's
    0/1 gather fixed. Passed to `fit` only, so it is never exported."""

    order = BnFreeze.order + 1

    def __init__(self, teacher: torch.nn.Module, weight: float = 1.0, temperature: float = 2.0):
        self.teacher, self.weight, self.temperature = teacher.eval(), weight, temperature
        self._logits = None

    def before_fit(self):
        self._size = imagenet.native_size(self.learn)
        self.teacher.to(next(self.learn.model.parameters()).device)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        head = self.learn.model[1]
        head[4].requires_grad_(False)  # the gather from ImageNet classes to ours stays the mapping
        self._hook = head[2].register_forward_hook(lambda m, i, o: setattr(self, "_logits", o))

    def before_train(self):
        for m in self.learn.model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()

    def after_loss(self):
        if not self.training or self.weight == 0:
            return
        t = self.temperature
        with torch.no_grad():
            pixels = self.xb[0].as_subclass(torch.Tensor)
            if pixels.shape[-1] != self._size:
                pixels = torch.nn.functional.interpolate(
                    pixels, size=(self._size, self._size), mode="bilinear", antialias=True
                )
            target = torch.softmax(self.teacher(pixels) / t, dim=1)
        student = torch.log_softmax(self._logits.as_subclass(torch.Tensor) / t, dim=1)
        distil = torch.nn.functional.kl_div(student, target, reduction="batchmean") * t * t
        self.learn.loss_grad = self.loss_grad + self.weight * distil

    def after_fit(self):
        self._hook.remove()
        self._logits = None


def wise_ft(learn: Learner, start: dict[str, torch.Tensor], alpha: float) -> Learner:
    """WiSE-FT (Wortsman et al. 2022) in place: every floating-point weight becomes
    `(1 - alpha) * start + alpha * fine-tuned`. `start`: the zero-shot learner's `model.state_dict()`,
    `alpha`: the fine-tuned share. Call on a copy to keep the fine-tuned weights."""
    tuned = learn.model.state_dict()
    mixed = {name: torch.lerp(start[name].to(t), t, alpha) if t.is_floating_point() else t for name, t in tuned.items()}
    learn.model.load_state_dict(mixed)
    return learn


def validation_loss(learn: Learner) -> float:
    """Cross-entropy on the validation split: what chooses between recipes when accuracy is saturated."""
    preds, targets = learn.get_preds(dl=learn.dls.valid)
    return float(torch.nn.functional.nll_loss(preds.clamp_min(1e-12).log(), targets))


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


def fine_tune_on_reviews(
    model_path: Path,
    reviews: Path,
    data_dir: Path | None = None,
    epochs: int = 1,
    lr: float = 1e-4,
    batch_size: int = 8,
) -> Learner:
    """Continue training the exported model on reviewed corrections (plus `data_dir`, if given,
    so it does not forget the rest). The guard is refitted on those photos
    (`imagenet.attach_ood`): write the result with `export.save`."""
    learn = modelfile.load(model_path)
    vocab = list(learn.dls.vocab)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for label in vocab:
            (root / label).mkdir()
            if data_dir and (Path(data_dir) / label).is_dir():
                for image in (Path(data_dir) / label).iterdir():
                    (root / label / image.name).symlink_to(image.resolve())
        for i, (image, label) in enumerate(feedback.reviewed_images(reviews)):
            if label in vocab:
                shutil.copy(image, root / label / f"review_{i}{image.suffix}")
        report = data.verify_folder(root)
        dls = data.dataloaders(root, report, size=input_size(learn), batch_size=batch_size)
        # vision_learner added the arch's normalisation to the training run's dataloaders; these need it too
        dls.add_tfms([t for t in learn.dls.valid.after_batch.fs if isinstance(t, Normalize)], "after_batch")
        learn.dls = dls
        if list(learn.dls.vocab) != vocab:
            raise data.DataError(f"Reviewed data has labels {list(learn.dls.vocab)}, the model {vocab}.")
        linear_probe(learn, epochs, lr)  # the head only: the pretrained body, and so the guard, stay as they are
        imagenet.attach_ood(learn, learn.dls.train.items)
    return learn
