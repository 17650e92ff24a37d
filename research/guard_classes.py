"""Found: no training photo shows a wild boar. *wild boar* is in the "mass, highest" guard's domain because bears give it
a little of their ImageNet mass, spread thin (mean 0.0033 over the black-bear photos, 0.0035 over the grizzlies, at
most 0.065 on any one photo), just over `choice.GUARD_MIN_MASS` (0.003). *siamang* and *toy poodle* are different: one
photo each carries most of theirs (0.20 and 0.27). The card used to say that a boar photo in the black-bear folder
made the class in domain; the measurement says otherwise (BENCHMARKS.md, "Why wild boar is in domain").

For each label of a data folder: the ImageNet classes whose mean probability over that label's photos reaches
`choice.GUARD_MIN_MASS` (the "mass" guards' domain), with the photo that gives each one the most, read by the
pretrained network at its own input size through the shipped model's transforms.

    python -m research.guard_classes [--data ../shared/data/bears]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fastai.vision.all import get_image_files

from bear_classifier import serving
from bear_classifier.settings import Settings
from bear_classifier.training import choice, imagenet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.guard_classes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/bears"))
    args = parser.parse_args(argv)
    learn = serving.load(Settings(), learner=True)[0].learn
    names = imagenet.class_names()
    paths = sorted(get_image_files(args.data))
    probabilities = imagenet.imagenet_probabilities(learn, paths, size=imagenet.native_size(learn))
    for label in sorted({p.parent.name for p in paths}):
        rows = [i for i, p in enumerate(paths) if p.parent.name == label]
        means = probabilities[rows].mean(0)
        print(f"\n{label} ({len(rows)} photos): class, mean probability, the photo that gives it most")
        for index in means.argsort(descending=True):
            if means[index] < choice.GUARD_MIN_MASS:
                break
            column = probabilities[rows, index]
            top = int(column.argmax())
            print(
                f"  {names[index].split(',')[0]:<22} {float(means[index]):.4f}  {paths[rows[top]].name} {float(column[top]):.3f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
