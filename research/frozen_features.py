"""Found: other views of the frozen body, mirror TTA and head/zero-shot ensembles do not beat the zero-shot reading at 320 px (99.4%); its tables are BENCHMARKS.md's "Other input views" and "Output ensembles", from commits f72764d and 79635c0.

What else the shipped linear probe's frozen body could give, measured without retraining: other
input views (mirrored, larger, letterboxed), mirror TTA, and output ensembles of our head with the
zero-shot reading. The body is the pretrained network, so each view's pooled features are computed once
and every head reads them. Ensemble weights are chosen on the validation split's log-loss; the external
photos are only measured.

    git show 8bf48bb:model.pkl > runs/linear_probe.pkl   # the linear probe shipped before the zero-shot model
    python -m research.frozen_features --model runs/linear_probe.pkl   # about 6 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from fastai.vision.all import AdaptiveConcatPool2d
from PIL import Image, ImageOps

from bear_classifier.model import modelfile
from bear_classifier.model.images import open_image
from bear_classifier.model.transforms import Transforms
from bear_classifier.training import evaluate, imagenet

WEIGHTS = (0.25, 0.5, 0.75, 1.0)
"""Share of our head in the output ensemble `w * head + (1 - w) * zero-shot` (1.0: the head alone)."""


def view(mirror: bool = False, letterbox: bool = False):
    """A photo as the view sees it, before the learner's own resize and crop (`transforms.Transforms`)."""

    def picture(path: Path) -> Image.Image:
        picture = open_image(path)
        if letterbox:  # black bars to a square, so the squash resize keeps the aspect ratio
            side = max(picture.size)
            picture = ImageOps.pad(picture, (side, side))
        return ImageOps.mirror(picture) if mirror else picture

    return picture


def features(learn, transforms: Transforms, paths: list[Path], size: int, picture=open_image) -> torch.Tensor:
    """The head's pooled input ([max, avg] of the body's last feature map) for each photo, at `size` px."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(paths), 16):
            batch = transforms([picture(p) for p in paths[start : start + 16]], size=size)
            out.append(learn.model[1][:2](learn.model[0](batch)))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m research.frozen_features")
    parser.add_argument("--model", type=Path, default=Path("runs/linear_probe.pkl"))
    args = parser.parse_args()
    learn = modelfile.load(args.model)
    if not imagenet.body_is_pretrained(learn) or not isinstance(learn.model[1][0], AdaptiveConcatPool2d):
        raise SystemExit(f"{args.model} is not a linear probe (fastai head on the pretrained body): see the docstring")
    vocab, transforms = list(learn.dls.vocab), Transforms.of(learn)
    state = learn.ood_state
    train, valid = evaluate.split(evaluate.DEFAULT_DATA, transforms.size)
    bears, not_bears = evaluate.external_sets(evaluate.DEFAULT_EXTERNAL)
    sets = {"train": train, "valid": valid, "external": [p for label in bears for p in bears[label]], **not_bears}
    labels = {
        name: torch.tensor([vocab.index(p.parent.name) for p in sets[name]]) for name in ("train", "valid", "external")
    }
    views = {
        "224 (shipped)": (224, open_image),
        "224 mirrored": (224, view(mirror=True)),
        "288": (288, open_image),
        "320": (320, open_image),
        "224 letterboxed": (224, view(letterbox=True)),
    }
    head = learn.model[1][2:].eval()
    outputs = {}
    for name, (size, picture) in views.items():
        f = {s: features(learn, transforms, paths, size, picture) for s, paths in sets.items()}
        with torch.inference_mode():
            outputs[name] = {
                s: (
                    torch.softmax(head(x), 1),
                    torch.softmax(x[:, x.shape[1] // 2 :] @ state["imagenet_weight"].T + state["imagenet_bias"], 1),
                )
                for s, x in f.items()
            }
        print(f"{name}: features done", flush=True)
    outputs["224 + mirrored (TTA)"] = {
        s: tuple((a + b) / 2 for a, b in zip(outputs["224 (shipped)"][s], outputs["224 mirrored"][s])) for s in sets
    }

    def errors(probabilities: torch.Tensor, split: str) -> str:
        wrong = int((probabilities.argmax(1) != labels[split]).sum())
        return f"{1 - wrong / len(labels[split]):.1%} ({wrong} wrong)"

    print(
        "\n| view | our head: validation | our head: external bears | zero-shot: external bears | guard recalibrated: external bears flagged | worst not-bears folder flagged |"
    )
    print("|---|---|---|---|---|---|")
    for name, out in outputs.items():
        means = imagenet.class_means(out["train"][1], [vocab[i] for i in labels["train"]], vocab)
        mapping, guard = (
            imagenet.ZeroShotMapping.fit(means, vocab),
            imagenet.ImageNetGuard.calibrate(means, out["train"][1]),
        )
        flags = {s: guard.is_out(out[s][1]).float().mean().item() for s in not_bears}
        worst = min(flags, key=flags.get)
        print(
            f"| {name} | {errors(out['valid'][0], 'valid')} | {errors(out['external'][0], 'external')} | "
            f"{errors(mapping.scores(out['external'][1]), 'external')} | {guard.is_out(out['external'][1]).float().mean():.1%} | "
            f"{flags[worst]:.1%} ({worst}) |"
        )
    shipped = outputs["224 (shipped)"]
    means = imagenet.class_means(shipped["train"][1], [vocab[i] for i in labels["train"]], vocab)
    mapping = imagenet.ZeroShotMapping.fit(means, vocab)
    print("\n| ensemble share of our head | validation log-loss (chooses) | validation | external bears |")
    print("|---|---|---|---|")
    for w in WEIGHTS:
        mixed = {}
        for split in ("valid", "external"):
            head_p, imagenet_p = shipped[split]
            zero_shot = mapping.scores(imagenet_p)
            mixed[split] = w * head_p + (1 - w) * zero_shot / zero_shot.sum(1, keepdim=True).clamp_min(1e-12)
        loss = -torch.log(mixed["valid"][range(len(labels["valid"])), labels["valid"]].clamp_min(1e-12)).mean()
        print(f"| {w} | {loss:.4f} | {errors(mixed['valid'], 'valid')} | {errors(mixed['external'], 'external')} |")


if __name__ == "__main__":
    main()
