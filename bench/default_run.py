"""Does the notebook's default run make the committed model? (issue 31, item 2). Too slow for CI: it needs a default
run first (20-60 minutes on a CPU), and the real photos.

    python -m bear_classifier.training.notebook -p data_dir ../shared/data/bears -p select_dir ../shared/data/external
    python -m bench.default_run runs/latest [--model model.pkl] [--data ../shared/data/bears]

Both model.pkl files answer the examples (examples/*.jpg) and the validation split (re-made from the
default seed); every answer must agree: the same label, the same out-of-domain flag, each probability within 1e-4. Prints the
photos that differ and exits 1 when any does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bear_classifier import files
from bear_classifier.model import modelfile
from bear_classifier.model.predictor import Predictor
from bear_classifier.model.transforms import input_size
from bear_classifier.settings import EXAMPLES_DIR, ROOT
from bear_classifier.training import candidates, data, evaluate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.default_run", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a default run's output_dir (runs/latest)")
    parser.add_argument("--model", type=Path, default=ROOT / "model.pkl", help="the committed model")
    parser.add_argument("--data", type=Path, default=evaluate.DEFAULT_DATA)
    args = parser.parse_args(argv)
    committed, made = modelfile.load(args.model), modelfile.load(args.run / "model.pkl")
    _, valid = evaluate.split(args.data, input_size(committed), seed=data.SEED)  # the default run's seed
    photos = sorted(EXAMPLES_DIR.glob("*.jpg")) + valid
    answers = [Predictor(learn, backend="torch").predict_batch(photos) for learn in (committed, made)]
    differing = 0
    for photo, left, right in zip(photos, *answers):
        found = candidates.differences(left, right)
        if found:
            differing += 1
            print(f"{photo}: {'; '.join(found)}")
    print(
        f"{len(photos) - differing}/{len(photos)} photos answered alike ({len(photos) - len(valid)} examples, "
        f"{len(valid)} validation) by {args.model} ({files.sha256(args.model)[:12]}) and "
        f"{args.run / 'model.pkl'} ({files.sha256(args.run / 'model.pkl')[:12]})"
    )
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
