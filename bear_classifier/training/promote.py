"""Make a training run's model the shipped one.

    python -m bear_classifier.training.promote [runs/latest]

training.ipynb writes model.pkl, model_card.md and confusion_matrix.png to its `output_dir` (runs/latest
by default), never over the committed files: a run is looked at first, then promoted. This command copies
the three files of a run (and the int8 graphs its card names) over the committed ones, after checking that the run is complete and that its
card describes its model.pkl (the app refuses a model whose SHA-256 differs from the card's).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from bear_classifier import files
from bear_classifier.model import card
from bear_classifier.model.predictor import INT8_GLOB
from bear_classifier.settings import ROOT

FILES = ("model.pkl", "model_card.md", "confusion_matrix.png")


class PromoteError(ValueError):
    """The run cannot be promoted; the message says why."""


def check_run(run: Path) -> None:
    """Raise `PromoteError` unless `run` holds a finished training run whose card matches its model."""
    missing = [name for name in FILES if not (run / name).is_file()]
    if missing:
        raise PromoteError(
            f"{run} is not a finished training run ({', '.join(missing)} missing): give the output_dir "
            "of a training.ipynb run that ran to the end."
        )
    if card.read(run / "model_card.md").sha256 != files.sha256(run / "model.pkl"):
        raise PromoteError(f"{run}/model_card.md describes another model.pkl (SHA-256 differs): train again.")


def promote(run: Path, target: Path = ROOT) -> list[Path]:
    """Copy the run's files over those in `target` (the project folder), with the int8 graphs its card names
    (`quantize`) in place of any there; returns what was written."""
    check_run(run)
    names = [*FILES, *card.read(run / "model_card.md").graphs]
    for old in target.glob(INT8_GLOB):
        old.unlink()
    for name in names:
        shutil.copyfile(run / name, target / name)
    return [target / name for name in names]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bear_classifier.training.promote", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run", type=Path, nargs="?", default=Path("runs/latest"), help="a training run's output_dir")
    args = parser.parse_args(argv)
    try:
        written = promote(args.run)
    except PromoteError as error:
        parser.error(str(error))
    print("replaced", ", ".join(str(path.relative_to(ROOT)) for path in written), "- commit them to ship this model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
