"""Found: the one-pass fine-tune's guard flags 10% of external bears shrunk to half the frame, where the shipped two-pass model flags none (BENCHMARKS.md, issue 18, from commit c9bb317): one reason the one-pass model did not ship.

Bears small in the frame: the external bears shrunk into a frame of the same size (the photo scaled by
`--scale` and centred on its own mean colour), measured with a model.pkl's own predictor: accuracy and the share
the out-of-domain guard flags, beside the unshrunk photos. Evaluation only: nothing is fitted here.

    python -m research.small_bears --model model.pkl [--model runs/nb18/model.pkl] [--scale 0.5] [--per-class 40]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageStat

from bear_classifier import files
from bear_classifier.model import modelfile
from bear_classifier.model.images import open_image
from bear_classifier.model.predictor import Predictor
from bear_classifier.training import evaluate


def shrink(path: Path, scale: float) -> Image.Image:
    picture = open_image(path)
    w, h = picture.size
    canvas = Image.new("RGB", (w, h), tuple(int(v) for v in ImageStat.Stat(picture).mean))
    small = picture.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.BICUBIC)
    canvas.paste(small, ((w - small.width) // 2, (h - small.height) // 2))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m research.small_bears")
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--external", type=Path, default=evaluate.DEFAULT_EXTERNAL)
    parser.add_argument("--scale", type=float, default=0.5)
    parser.add_argument("--per-class", type=int, default=40)
    args = parser.parse_args()
    bears, _ = evaluate.external_sets(args.external)
    paths = [p for label in sorted(bears) for p in bears[label][: args.per_class]]
    print(
        f"| model | photos | accuracy, as they are | flagged, as they are | accuracy, bear at {args.scale:.0%} | flagged, bear at {args.scale:.0%} |"
    )
    print("|---|---|---|---|---|---|")
    for model in args.model:
        predictor = Predictor(modelfile.load(model), backend="torch")
        rows = []
        for images in (paths, [shrink(p, args.scale) for p in paths]):
            results = predictor.predict_batch(images)
            right = sum(r.label == p.parent.name for r, p in zip(results, paths))
            flagged = sum(r.out_of_domain for r in results)
            rows.append(
                f"{right / len(paths):.1%} ({right}/{len(paths)}) | {flagged / len(paths):.1%} ({flagged}/{len(paths)})"
            )
        print(f"| {model} ({files.sha256(model)[:8]}) | {len(paths)} | {rows[0]} | {rows[1]} |", flush=True)


if __name__ == "__main__":
    main()
