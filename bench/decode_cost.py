"""The CPU a real photo's decode costs in a decoder worker, measured on every photo in ../shared/data: what the
per-photo budget (BEAR_DECODE_CPU_SECONDS) must leave room for. Also checks that none of them is refused by the
input gate's structure checks (`images.open_image`).

    python -m bench.decode_cost          # about a minute; prints percentiles and the slowest photos
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bear_classifier.model.images import ImageError, open_image
from bear_classifier.settings import EXAMPLES_DIR
from tests.support.hard_inputs import encode

SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
EXAMPLE = EXAMPLES_DIR / "grizzly_bear.jpg"
SIZE = (224, 224)
"""What the worker resizes to for the shipped network (decoding.DecoderPool's sizes): part of the cost."""


def measure(path: Path | bytes) -> float | str:
    """CPU seconds to decode and resize the photo as a worker does, or the refusal's message."""
    start = time.process_time()
    try:
        open_image(path).resize(SIZE, Image.Resampling.BILINEAR)
    except ImageError as refusal:
        return str(refusal)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "folder", nargs="?", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    )
    args = parser.parse_args()
    photos = sorted(p for p in Path(args.folder).rglob("*") if p.suffix.lower() in SUFFIXES)
    costs, refused = {}, {}
    for path in photos:
        result = measure(path)
        (refused if isinstance(result, str) else costs)[path] = result
    seconds = np.array(list(costs.values()))
    print(f"{len(photos)} photos, {len(refused)} refused")
    for path, why in refused.items():
        print(f"  refused {path}: {why}")
    for q in (50, 99, 99.9, 100):
        print(f"CPU seconds, {q}th percentile: {np.percentile(seconds, q):.3f}")
    for path in sorted(costs, key=costs.get)[-3:]:
        print(f"  {costs[path]:.3f} s {path}")
    for progressive in (False, True):  # the largest photo the app takes: 50 MP, as a phone writes it
        photo = encode(Image.open(EXAMPLE).resize((8160, 6120)), "JPEG", quality=90, progressive=progressive)
        seconds = min(measure(photo) for _ in range(3))
        print(f"a 50 MP {'progressive' if progressive else 'baseline'} JPEG: {seconds:.3f} s (best of 3)")


if __name__ == "__main__":
    main()
