"""Found: one pass above 224 px lets 8 of 10 polar bears past the guard, so the guard got its own 224 px pass then; its table is BENCHMARKS.md's "One pass at a larger size", from commit 89d8e40.

The input size, measured: at each size, the zero-shot reading's accuracy and the ImageNet guard's flag
rates when both read the same single pass of the pretrained network. Mapping and guard are fitted on
the training split at that size with the shipped settings (`imagenet.MIN_MASS`, `choice.GUARD_MIN_MASS`,
`imagenet.QUANTILE`); the validation split and the external sets only measure.

    python -m research.sizes [--sizes 224 256 288 320] [--guard-min-mass 0.003] [--out runs/sizes.md]   # 5 minutes
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bear_classifier.training import choice, data, evaluate, imagenet, train
from bench import write_table


def row(size: int, network: torch.nn.Module, guard_min_mass: float) -> tuple[str, list[str]]:
    dls = data.dataloaders(evaluate.DEFAULT_DATA, data.verify_folder(evaluate.DEFAULT_DATA), size=size)
    learn = train.make_learner(dls, frozen_body=True)  # its transforms only
    train_items, valid = list(dls.train.items), list(dls.valid.items)
    bears, not_bears = evaluate.external_sets(evaluate.DEFAULT_EXTERNAL)
    bear_paths = [p for paths in bears.values() for p in paths]
    sets = {"train": train_items, "valid": valid, "external bears": bear_paths, **not_bears}
    probs = {name: imagenet.imagenet_probabilities(learn, paths, network) for name, paths in sets.items()}
    vocab = list(dls.vocab)
    means = imagenet.class_means(probs["train"], [p.parent.name for p in train_items], vocab)
    mapping = imagenet.ZeroShotMapping.fit(means, vocab).check()
    guard = imagenet.ImageNetGuard.calibrate(means, probs["train"], min_mass=guard_min_mass)

    def accuracy(name: str) -> str:
        correct = sum(p == q.parent.name for p, q in zip(mapping.predict(probs[name]), sets[name]))
        return f"{correct / len(sets[name]):.1%} ({correct}/{len(sets[name])})"

    def flagged(name: str) -> str:
        out = int(guard.is_out(probs[name]).sum())
        return f"{out / len(sets[name]):.1%} ({out}/{len(sets[name])})"

    cells = [str(size), accuracy("valid"), accuracy("external bears"), flagged("valid"), flagged("external bears")]
    return "| " + " | ".join(cells + [flagged(source) for source in not_bears]) + " |", list(not_bears)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m research.sizes")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 256, 288, 320])
    parser.add_argument("--guard-min-mass", type=float, default=choice.GUARD_MIN_MASS)
    parser.add_argument("--out", type=Path, default=Path("runs/sizes.md"))
    args = parser.parse_args()
    network = imagenet.pretrained_network(imagenet.DEFAULT_ARCH)
    rows = [row(size, network, args.guard_min_mass) for size in args.sizes]
    sources = rows[0][1]
    lines = [
        "| size (px) | zero-shot, validation | zero-shot, external bears | guard: validation flagged | "
        "guard: external bears flagged | " + " | ".join(f"guard: {s}" for s in sources) + " |",
        "|---|---|---|---|---|" + "---|" * len(sources),
        *(line for line, _ in rows),
    ]
    write_table(lines, args.out)


if __name__ == "__main__":
    main()
