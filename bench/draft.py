"""JPEG draft decoding against a full decode, photo by photo: is it exact enough for the batch command?

Draft mode (`Predictor(draft=True)`, `BEAR_DRAFT_JPEG=1`) lets libjpeg scale a JPEG down by 1/2, 1/4 or 1/8 while
decoding it, keeping both sides at least twice the network's input. A photo smaller than that decodes as before.
Both predictors are the shipped model as the batch command loads it; the only difference is the decode. Compared:
labels, out-of-domain flags, the largest probability and guard-score differences, on the external photos (real,
mostly small) and on 4000x3000 JPEGs made by enlarging some of them (phone-sized, but enlarged: smoother than a
real phone photo, so their differences are a lower bound).

    python -m bench.draft                   # a few minutes on 2 cores; writes runs/draft.md
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from bear_classifier.settings import ROOT, Settings
from bear_classifier.training import evaluate
from bench import write_table

OUT = ROOT / "runs" / "draft.md"


@dataclass
class Comparison:
    name: str
    photos: int = 0
    drafted: int = 0
    """Photos that draft mode decoded at a reduced size (the others are decoded exactly as before)."""
    labels: list[str] = field(default_factory=list)
    """Photos whose label changed."""
    flags: list[str] = field(default_factory=list)
    """Photos whose out-of-domain flag changed."""
    probability: float = 0.0
    ood_score: float = 0.0

    def row(self) -> str:
        changed = ", ".join(Path(p).name for p in self.labels + self.flags) or "none"
        return (
            f"| {self.name} | {self.photos} | {self.drafted} | {len(self.labels)} | {len(self.flags)} "
            f"| {self.probability:.4f} | {self.ood_score:.4f} | {changed} |"
        )


def drafted(path: str, size: int) -> bool:
    """Whether draft mode decodes the photo at `path` smaller than its full size."""
    with Image.open(path) as image:
        full = image.size
        return image.format == "JPEG" and image.draft("RGB", (size, size)) is not None and image.size != full


def compare(name: str, paths: list[str], full, draft) -> Comparison:
    from bear_classifier.model.images import ImageError

    result = Comparison(name)
    for path in paths:
        try:
            exact, fast = full.predict(path), draft.predict(path)
        except ImageError:
            continue  # refused either way: the gate runs before the decode
        result.photos += 1
        result.drafted += drafted(path, draft.draft_size)
        if exact.label != fast.label:
            result.labels.append(path)
        if exact.out_of_domain != fast.out_of_domain:
            result.flags.append(path)
        result.probability = max(
            result.probability, *(abs(exact.probabilities[c] - fast.probabilities[c]) for c in exact.probabilities)
        )
        result.ood_score = max(result.ood_score, abs(exact.ood_score - fast.ood_score))
    return result


def enlarged(paths: list[str], folder: Path) -> list[str]:
    """4000x3000 JPEGs (quality 92) made from `paths`."""
    made = []
    for n, path in enumerate(paths):
        target = folder / f"{n:03d}_{Path(path).stem}.jpg"
        Image.open(path).convert("RGB").resize((4000, 3000), Image.BICUBIC).save(target, quality=92)
        made.append(str(target))
    return made


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.draft", description=__doc__.split("\n\n")[0])
    parser.add_argument("--external", type=Path, default=evaluate.DEFAULT_EXTERNAL)
    parser.add_argument("--enlarged", type=int, default=40, help="external photos also compared at 4000x3000")
    args = parser.parse_args(argv)
    from bear_classifier.batch.classify import photo_paths
    from bear_classifier.batch.classify_common import load_predictor

    settings = Settings.from_env()
    full = load_predictor(dataclasses.replace(settings, draft_jpeg=False))
    draft = load_predictor(dataclasses.replace(settings, draft_jpeg=True))
    photos = photo_paths([str(args.external)])
    results = [compare(f"{args.external} (real photos)", photos, full, draft)]
    with tempfile.TemporaryDirectory() as tmp:
        big = enlarged(photos[:: max(1, len(photos) // args.enlarged)][: args.enlarged], Path(tmp))
        results.append(compare("the same, enlarged to 4000x3000 (every n-th)", big, full, draft))
    lines = [
        f"**JPEG draft decoding (to at least {draft.draft_size} px a side) against a full decode**, "
        f"same model and graphs (`{', '.join(full.graphs) or 'PyTorch'}`)",
        "",
        "| photos | compared | decoded smaller | labels changed | flags changed | max probability difference "
        "| max guard-score difference | which changed |",
        "|---|---|---|---|---|---|---|---|",
        *(result.row() for result in results),
    ]
    write_table(lines, OUT)  # answers, not speeds: the load does not move them


if __name__ == "__main__":
    main()
