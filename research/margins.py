"""Found: on the shipped model's own training photos, answers whose top class leads the second by less than 0.3 are right 5 times in 12, those with a larger lead 404 of 405, and all 104 validation photos lead by more: `serving.UNSURE_MARGIN` = 0.3 (its table is this docstring's, from commit acc8ac9).

How close are the shipped model's close calls? The lead of the top class over the second on the training
run's own photos (its training and validation split), and how often the answer is right below each lead:
where `serving.UNSURE_MARGIN` comes from. Never run on the external photos (they judge the model, not tune it).

    python -m research.margins [--data ../shared/data/bears]

Last run (shipped model.pkl, 2 shared vCPUs, about 3 min):

    split   photos  wrong  lead < 0.1  lead < 0.2  lead < 0.3  lead < 0.4   (photos, of them right)
    valid   104     0      0, 0        0, 0        0, 0        2, 2
    train   417     8      5, 1        6, 2        12, 5       14, 7

Below a lead of 0.3 the answer is right 5 times in 12, a coin flip; above it 404 of 405 training photos and all
104 validation photos are right.
"""

import argparse
from pathlib import Path

from bear_classifier import serving
from bear_classifier.settings import Settings
from bear_classifier.training import evaluate

LEADS = (0.1, 0.2, 0.3, 0.4)


def leads(model, paths: list[Path], batch: int = 16) -> list[tuple[float, bool]]:
    """(top class's lead over the second, right?) per photo that could be read."""
    rows = []
    for i in range(0, len(paths), batch):
        chunk = paths[i : i + batch]
        for path, prediction in zip(chunk, model.predict_batch([str(p) for p in chunk])):
            if isinstance(prediction, Exception):
                continue
            first, second = sorted(prediction.probabilities.values(), reverse=True)[:2]
            rows.append((first - second, prediction.label == path.parent.name))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=evaluate.DEFAULT_DATA, help="the training run's photo folder")
    args = parser.parse_args()
    model, facts = serving.load(Settings())
    train, valid = evaluate.split(args.data, facts.image_size)
    print("split   photos  wrong  " + "  ".join(f"lead < {lead}" for lead in LEADS) + "   (photos, of them right)")
    for name, paths in (("valid", valid), ("train", train)):
        rows = leads(model, paths)
        cells = []
        for lead in LEADS:
            below = [right for margin, right in rows if margin < lead]
            cells.append(f"{len(below)}, {sum(below)}".ljust(10))
        print((f"{name:8}{len(rows):<8}{sum(not right for _, right in rows):<7}" + "  ".join(cells)).rstrip())


if __name__ == "__main__":
    main()
