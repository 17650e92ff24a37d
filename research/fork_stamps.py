"""A fork whose classes ImageNet has no class for (issue 31, "done when"): is the chosen model at least as accurate,
on the same photos, as the course's recipe at the course's settings?

    python -m research.fork_stamps [--out runs/fork] [--per-class 40]

Licence-clean photos: Tux Paint's chess-piece, music-symbol and maths-symbol stamps (GPL-2.0-or-later, Debian package
tuxpaint-stamps-default, /usr/share/tuxpaint/stamps/symbols) on scikit-image's CC0 textures, made the way
tests/fixtures/make_bears.py makes the bear fixture (see tests/fixtures/ATTRIBUTION.md); written under --out, never
committed. `photos/<label>/` trains; `external/<label>/` (plain layout) is split by SHA-256: its selection half is the
notebook's `select_dir`, its test half measures. Two notebook runs: the default (every candidate, the rule chooses)
and the course's recipe alone (`-p recipes '["fine_tune"]' -p zero_shot_sizes '[]'`); both exported models are
measured on the same test half. Prints a markdown table (and writes it to <out>/table.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bear_classifier.model import card
from bear_classifier.training import card_writer, notebook
from tests.fixtures.make_bears import variant

STAMPS = Path("/usr/share/tuxpaint/stamps/symbols")
CLASSES = {"chess": STAMPS / "chess", "music": STAMPS / "music", "maths": STAMPS / "math"}
EXTERNAL_OFFSET = 1000
"""The external photos' variant numbers start here: other crops, tints and places than the training photos'."""


def make(out: Path, per_class: int) -> None:
    for label, folder in CLASSES.items():
        cutouts = sorted(folder.glob("*.png"))
        for part, start in (("photos", 0), ("external", EXTERNAL_OFFSET)):
            target = out / part / label
            target.mkdir(parents=True, exist_ok=True)
            for i in range(start, start + per_class):
                variant(cutouts[i % len(cutouts)], i).save(target / f"{label}_{i:04d}.jpg", quality=85)


def run(out: Path, name: str, *extra: str) -> card.TrainingFacts:
    folder = out / name
    parameters = {"data_dir": out / "photos", "select_dir": out / "external", "output_dir": folder, "run_dir": folder}
    words = [word for key, value in parameters.items() for word in ("-p", key, str(value))]
    if notebook.main([*words, *extra, "--out", str(folder / "training.ipynb")]) != 0:
        raise SystemExit(f"the {name} run failed: see {folder / 'training.ipynb'}")
    return card.read(folder / "model_card.md")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m research.fork_stamps", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/fork"))
    parser.add_argument("--per-class", type=int, default=40)
    args = parser.parse_args()
    make(args.out, args.per_class)
    chosen = run(args.out, "chosen")
    course = run(args.out, "course", "-p", "recipes", '["fine_tune"]', "-p", "zero_shot_sizes", "[]")
    rows = [
        "| run | model shipped | validation | external test half |",
        "|---|---|---|---|",
        *(
            f"| {name} | {facts.choice['chosen']} | {facts.valid_accuracy:.1%} | {facts.external_accuracy:.1%} "
            f"({facts.n_external} photos) |"
            for name, facts in (("default (the rule chooses)", chosen), ("the course's recipe alone", course))
        ),
    ]
    table = "\n".join(rows) + "\n\nThe default run's candidates:\n\n" + card_writer.choice_text(chosen)
    (args.out / "table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
