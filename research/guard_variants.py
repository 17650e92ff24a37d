"""Found: only the ImageNet-mass guard with min_mass 0.003 met both targets, and the k-NN feature distance did not help; its table is BENCHMARKS.md's "Out-of-domain guard variants", from commit 3f35047.

The ImageNet out-of-domain guard's settings, measured: which ImageNet classes count as in domain
(mean probability >= `min_mass` on one class of training photos), which quantile of the training
photos' scores becomes the threshold, and whether adding the k-NN feature distance (the old guard,
here on the pretrained body's features) helps. Everything is fitted on the training split; the
validation split and the external sets only measure.

    python -m research.guard_variants [--size 224] [--out runs/guard_variants.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from bear_classifier.model.images import open_image
from bear_classifier.model.transforms import Transforms
from bear_classifier.training import data, evaluate, imagenet, train
from bench import write_table

MIN_MASSES = (0.003, 0.005, 0.01, 0.02)
QUANTILES = (0.99, 0.995, 1.0)


def outputs(learn, network, paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ImageNet probabilities, average-pooled features) of the pretrained network."""
    transforms = Transforms.of(learn)
    probs, feats = [], []
    with torch.inference_mode():
        for start in range(0, len(paths), 32):
            features = network.forward_features(transforms([open_image(p) for p in paths[start : start + 32]]))
            feats.append(features.mean((2, 3)))
            probs.append(torch.softmax(network.forward_head(features), 1))
    return torch.cat(probs), torch.cat(feats)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m research.guard_variants")
    parser.add_argument("--size", type=int, default=224, help="the model's input size (the notebook's image_size)")
    parser.add_argument("--out", type=Path, default=Path("runs/guard_variants.md"))
    args = parser.parse_args()
    dls = data.dataloaders(evaluate.DEFAULT_DATA, data.verify_folder(evaluate.DEFAULT_DATA), size=args.size)
    learn = train.make_learner(dls, frozen_body=True)  # its transforms and arch only
    network = imagenet.pretrained_network(imagenet.arch_of(learn))
    train_items, valid = list(dls.train.items), list(dls.valid.items)
    bears, not_bears = evaluate.external_sets(evaluate.DEFAULT_EXTERNAL)
    sets = {"train": train_items, "valid": valid, "external bears": [p for v in bears.values() for p in v]}
    sets.update({f"not_bears/{k}": v for k, v in not_bears.items()})
    out = {name: outputs(learn, network, paths) for name, paths in sets.items()}
    means = imagenet.class_means(out["train"][0], [p.parent.name for p in train_items], list(dls.vocab))
    bank = F.normalize(out["train"][1], dim=1)

    def knn(name: str) -> torch.Tensor:
        similarity = F.normalize(out[name][1], dim=1) @ bank.T
        if name == "train":
            similarity.fill_diagonal_(-1)  # leave-one-out
        return 1 - similarity.topk(5, dim=1).values.mean(1)

    sources = [name for name in sets if name.startswith("not_bears/")]
    lines = [
        "| guard | in-domain classes | quantile | validation flagged | external bears flagged | "
        + " | ".join(s.split("/")[1] for s in sources)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(sources),
    ]
    for min_mass in MIN_MASSES:
        guard = imagenet.ImageNetGuard.calibrate(means, out["train"][0], min_mass=min_mass)
        mass = {name: guard.score(out[name][0]) for name in sets}
        train_mass, train_knn = mass["train"], knn("train")
        combined = {
            name: (mass[name] - train_mass.mean()) / train_mass.std() + (knn(name) - train_knn.mean()) / train_knn.std()
            for name in sets
        }
        for label, scores in (("ImageNet mass", mass), ("mass + k-NN (z-scores summed)", combined)):
            for quantile in QUANTILES:
                threshold = torch.quantile(scores["train"], quantile)
                rate = {name: float((scores[name] > threshold).float().mean()) for name in sets}
                lines.append(
                    f"| {label}, min_mass {min_mass} | {len(guard.in_domain)} | {quantile} | {rate['valid']:.1%} | "
                    f"{rate['external bears']:.1%} | " + " | ".join(f"{rate[s]:.1%}" for s in sources) + " |"
                )
    write_table(lines, args.out)


if __name__ == "__main__":
    main()
