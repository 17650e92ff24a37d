"""Measuring each candidate model of training.ipynb on the same photos, for `choice.choose`.

A candidate is a learner in some state (a zero-shot head, fine-tuned weights, a WiSE-FT mix) read at an answer size,
with its guard read at a guard size. Each one's guard is fitted on the training photos in every way
`imagenet.GUARD_RULES` lists, and the choosing photos pick one (`choice.best_guard`). The photos are decoded and
transformed once per size (`Inputs`), so a dozen candidates cost a dozen forward passes, not a dozen decodings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from fastai.vision.all import Learner

from bear_classifier.model.images import ImageError, open_image
from bear_classifier.model.predictor import Prediction
from bear_classifier.model.transforms import Transforms, input_size
from bear_classifier.training import choice, data, evaluate, imagenet, train


@dataclass(frozen=True)
class Photos:
    """The training photos (the guards are fitted on them), validation, and the photos that choose."""

    train: list[Path]
    valid: list[Path]
    in_domain: dict[str, list[Path]]
    """Label -> choosing photos: the selection half of `select_dir`, or validation without one."""
    out_of_domain: dict[str, list[Path]]
    """Source folder -> choosing photos that are none of the classes (only with `select_dir`)."""
    on: str
    """What chooses, in words."""

    @classmethod
    def of(cls, train: Sequence[Path], valid: Sequence[Path], select_dir: Path | None) -> Photos:
        if select_dir is None:
            by_label: dict[str, list[Path]] = {}
            for path in valid:
                by_label.setdefault(path.parent.name, []).append(path)
            return cls(list(train), list(valid), by_label, {}, "validation")
        in_domain, out_of_domain = evaluate.external_sets(select_dir, "selection")
        return cls(list(train), list(valid), in_domain, out_of_domain, f"the selection half of {select_dir}")


class Inputs:
    """The network's input for each photo at each size, computed once (the learner's validation transforms)."""

    def __init__(self, learn: Learner):
        self.transforms = Transforms.of(learn)
        self._cache: dict[tuple[Path, int], torch.Tensor] = {}

    def __call__(self, paths: Sequence[Path], size: int) -> torch.Tensor:
        missing = [p for p in dict.fromkeys(paths) if (p, size) not in self._cache]
        for start in range(0, len(missing), 32):
            batch = missing[start : start + 32]
            tensors = self.transforms([open_image(p) for p in batch], size=size)
            self._cache.update({(p, size): t for p, t in zip(batch, tensors)})
        return torch.stack([self._cache[(p, size)] for p in paths]) if paths else torch.zeros(0)


def probabilities(network: torch.nn.Module, inputs: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Softmax of the network's output: our classes for a learner's model (fastai's `predict` does the same),
    ImageNet's for `imagenet.own_body_network`."""
    network = network.eval()
    device = next(network.parameters()).device
    with torch.inference_mode():
        out = [
            torch.softmax(network(inputs[i : i + batch_size].to(device)), dim=1).cpu()
            for i in range(0, len(inputs), batch_size)
        ]
    return torch.cat(out)


def measure(
    learn: Learner,
    photos: Photos,
    inputs: Inputs,
    name: str,
    share: float,
    zero_shot: bool,
    answer_size: int | None = None,
    guard_size: int | None = None,
) -> choice.Candidate:
    """The candidate `learn` is now: its answers at `answer_size` (the learner's own by default) on the choosing
    photos and validation, its guard at `guard_size` (likewise) fitted each way and the best kept."""
    own = input_size(learn)
    answer_size, guard_size = answer_size or own, guard_size or own
    vocab = list(learn.dls.vocab)
    labels = [label for label, paths in photos.in_domain.items() for _ in paths]
    choosing = [p for paths in photos.in_domain.values() for p in paths]
    model = learn.model

    def answers(paths: list[Path]) -> list[str]:
        return [vocab[int(i)] for i in probabilities(model, inputs(paths, answer_size)).argmax(1)] if paths else []

    right = sum(a == t for a, t in zip(answers(choosing), labels))
    valid_right = sum(a == p.parent.name for a, p in zip(answers(photos.valid), photos.valid))
    network = imagenet.own_body_network(learn)
    train_probabilities = probabilities(network, inputs(photos.train, guard_size))
    guarded = {key: probabilities(network, inputs(paths, guard_size)) for key, paths in photos.out_of_domain.items()}
    choosing_probabilities = probabilities(network, inputs(choosing, guard_size))
    train_labels = [p.parent.name for p in photos.train]
    readings = []
    for rule in imagenet.GUARD_RULES:
        guard = imagenet.fit_guard(train_probabilities, train_labels, vocab, rule)
        readings.append(
            choice.Candidate(
                name=name,
                passes=1 if answer_size == guard_size else 2,
                share=share,
                zero_shot=zero_shot,
                right=right,
                n=len(choosing),
                flagged=int(guard.is_out(choosing_probabilities).sum()),
                out_of_domain={k: (int(guard.is_out(p).sum()), len(p)) for k, p in guarded.items()},
                valid_right=valid_right,
                valid_n=len(photos.valid),
                guard=rule,
                threshold=guard.threshold,
            )
        )
    best = choice.best_guard(readings)
    worst = best.worst_out_of_domain
    print(
        f"{name}: {best.right}/{best.n} right, {best.flagged} in-domain flagged"
        + (f", worst not-in-domain folder {worst[0]} {worst[1]:.1%}" if worst else "")
        + f", validation {valid_right}/{len(photos.valid)}; guard {best.guard}"
    )
    return best


def zero_shot_mapping(learn: Learner, photos: Photos, inputs: Inputs, size: int) -> imagenet.ZeroShotMapping:
    """The zero-shot mapping read at `size` from the training photos (`imagenet.fit` reads the learner's own)."""
    network = imagenet.pretrained_network(imagenet.arch_of(learn))
    means = imagenet.class_means(
        probabilities(network, inputs(photos.train, size)), [p.parent.name for p in photos.train], learn.dls.vocab
    )
    return imagenet.ZeroShotMapping.fit(means, learn.dls.vocab)


def zero_shot_model(
    data_dir: Path,
    size: int,
    guard_size: int | None,
    rule: str,
    arch: str = imagenet.DEFAULT_ARCH,
    seed: int = data.SEED,
    batch_size: int = 32,
) -> Learner:
    """A zero-shot candidate made again outside the notebook, as its run makes it when the rule chooses one: the split
    of `data_dir`, the mapping read at `size` from the training photos, the guard fitted as `rule` (a key of
    `choice.GUARD_RULES`) at `guard_size` (None: `size`, one pass). Nothing is trained, so it answers as the notebook's
    model does (tests/test_model.py checks the committed one against it)."""
    dls = data.dataloaders(data_dir, data.verify_folder(data_dir), size=size, seed=seed, batch_size=batch_size)
    learn = train.make_learner(dls, arch, frozen_body=True)
    photos = Photos.of(dls.train.items, dls.valid.items, None)
    train.zero_shot(learn, zero_shot_mapping(learn, photos, Inputs(learn), size))
    imagenet.attach_ood(learn, dls.train.items, guard_size=guard_size, rule=rule)
    return learn


TOLERANCE = 1e-4
"""Two models answer alike when each probability is within this (and labels and flags are equal)."""


def differences(left: Prediction | ImageError, right: Prediction | ImageError) -> list[str]:
    """How two models' answers to one photo differ, in words; empty when they agree (issue 31: a default run's model
    against the committed one, `bench.default_run` and tests/test_model.py)."""
    if isinstance(left, ImageError) or isinstance(right, ImageError):
        return [] if type(left) is type(right) else [f"{left!r} against {right!r}"]
    found = []
    if left.label != right.label:
        found.append(f"label {left.label} against {right.label}")
    if left.out_of_domain != right.out_of_domain:
        found.append(f"flagged {left.out_of_domain} against {right.out_of_domain}")
    gap = max(abs(left.probabilities[k] - right.probabilities.get(k, -1.0)) for k in left.probabilities)
    if gap > TOLERANCE:
        found.append(f"probabilities differ by {gap:.2e}")
    return found
