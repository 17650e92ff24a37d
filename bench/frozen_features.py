"""What else the shipped linear probe's frozen body could give, measured without retraining: other
input views (mirrored, larger, letterboxed), mirror TTA, and output ensembles of our head with the
zero-shot reading. The body is the pretrained network, so each view's pooled features are computed once
and every head reads them. Ensemble weights are chosen on the validation split's log-loss; the external
photos are only measured.

    git show 8bf48bb:model.pkl > runs/linear_probe.pkl   # the linear probe shipped before the zero-shot model
    python -m bench.frozen_features --model runs/linear_probe.pkl   # about 6 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from fastai.vision.all import AdaptiveConcatPool2d, Normalize
from PIL import Image, ImageOps

from bear_classifier import evaluate, export, imagenet
from bear_classifier.images import open_image
from bear_classifier.predictor import Predictor, input_size

WEIGHTS = (0.25, 0.5, 0.75, 1.0)
"""Share of our head in the output ensemble `w * head + (1 - w) * zero-shot` (1.0: the head alone)."""


def view(size: int, mirror: bool = False, letterbox: bool = False):
    """fastai's validation resize (squash to size + 14%, centre crop) at another size, or a letterbox."""

    def pixels(picture: Image.Image) -> torch.Tensor:
        if letterbox:
            picture = ImageOps.pad(picture, (size, size), Image.BILINEAR)
        else:
            side = size + math.ceil(size * 0.14 / 8) * 8
            margin = (side - size) // 2
            picture = picture.resize((side, side), Image.BILINEAR).crop((margin, margin, margin + size, margin + size))
        if mirror:
            picture = ImageOps.mirror(picture)
        return torch.from_numpy(np.array(picture)).permute(2, 0, 1).float() / 255

    return pixels


def features(learn, predictor: Predictor, paths: list[Path], pixels=None) -> torch.Tensor:
    """The head's pooled input ([max, avg] of the body's last feature map) for each photo."""
    normalize = next(t for t in learn.dls.valid.after_batch.fs if isinstance(t, Normalize))  # the arch's own stats
    mean, std = normalize.mean.cpu()[0], normalize.std.cpu()[0]
    out = []
    with torch.inference_mode():
        for start in range(0, len(paths), 16):
            chunk = paths[start : start + 16]
            if pixels is None:
                batch = predictor.preprocess(chunk)
            else:
                batch = (torch.stack([pixels(open_image(p)) for p in chunk]) - mean) / std
            out.append(learn.model[1][:2](learn.model[0](batch)))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.frozen_features")
    parser.add_argument("--model", type=Path, default=Path("runs/linear_probe.pkl"))
    args = parser.parse_args()
    learn = export.load(args.model)
    if not imagenet.body_is_pretrained(learn) or not isinstance(learn.model[1][0], AdaptiveConcatPool2d):
        raise SystemExit(f"{args.model} is not a linear probe (fastai head on the pretrained body): see the docstring")
    vocab, predictor = list(learn.dls.vocab), Predictor(learn, backend="torch")
    state = learn.ood_state
    train, valid = evaluate.split(evaluate.DEFAULT_DATA, input_size(learn))
    bears, not_bears = evaluate.external_sets(evaluate.DEFAULT_EXTERNAL)
    sets = {"train": train, "valid": valid, "external": [p for label in bears for p in bears[label]], **not_bears}
    labels = {
        name: torch.tensor([vocab.index(p.parent.name) for p in sets[name]]) for name in ("train", "valid", "external")
    }
    views = {
        "224 (shipped)": None,
        "224 mirrored": view(224, mirror=True),
        "288": view(288),
        "320": view(320),
        "224 letterboxed": view(224, letterbox=True),
    }
    head = learn.model[1][2:].eval()
    outputs = {}
    for name, pixels in views.items():
        f = {s: features(learn, predictor, paths, pixels) for s, paths in sets.items()}
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
