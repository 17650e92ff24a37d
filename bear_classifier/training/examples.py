"""The page's examples from the student's own photos (training.ipynb, `-p write_examples True`).

One validation photo per class that the model answers right with the highest confidence, and one photo of none
of the classes that the guard flags, when the selection photos hold any. They are written to examples/ only when
asked: photos from a web search have unknown licences, and examples/ is published with the Space.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageOps

from bear_classifier.model.predictor import Prediction, Predictor
from bear_classifier.settings import EXAMPLES_DIR

SIDE = 800
"""Examples are stored at most this many pixels a side: enough for the page, a fraction of a photo's size."""
FLAGGED_PREFIX = "flagged_"
"""The flagged example's name starts with this, so that it never names a class (`deploy.check_examples`)."""


def propose(predictor: Predictor, valid: Sequence[Path], not_in_domain: Sequence[Path] = ()) -> dict[str, Path]:
    """{file name in examples/: photo}: `<label>.jpg` for each class whose validation photos (in `<label>/`
    folders) the model answers right, unflagged, with the highest confidence; `flagged_<folder>.jpg` for the
    photo of `not_in_domain` that the guard flags with the highest score, when it flags any."""
    best: dict[str, tuple[float, Path]] = {}
    for path, result in zip(valid, predictor.predict_batch(list(valid)), strict=True):
        if isinstance(result, Prediction) and result.label == path.parent.name and not result.out_of_domain:
            top = result.probabilities[result.label]
            if result.label not in best or top > best[result.label][0]:
                best[result.label] = (top, path)
    chosen = {f"{label}.jpg": path for label, (_, path) in sorted(best.items())}
    flagged = [
        (result.ood_score, path)
        for path, result in zip(not_in_domain, predictor.predict_batch(list(not_in_domain)), strict=True)
        if isinstance(result, Prediction) and result.out_of_domain
    ]
    if flagged:
        _, path = max(flagged)
        chosen[f"{FLAGGED_PREFIX}{path.parent.name}.jpg"] = path
    return chosen


def write(chosen: dict[str, Path], data_source: str, folder: Path = EXAMPLES_DIR) -> list[Path]:
    """Replace the examples in `folder` with `chosen` (re-encoded JPEGs without EXIF, at most `SIDE` pixels a side)
    and an ATTRIBUTION.md that names each one's source photo; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_file():
            old.unlink()
    written = []
    for name, source in chosen.items():
        with Image.open(source) as image:
            photo = ImageOps.exif_transpose(image).convert("RGB")
        photo.thumbnail((SIDE, SIDE))
        photo.save(folder / name, quality=90)
        written.append(folder / name)
    rows = "\n".join(f"| `{name}` | `{source.parent.name}/{source.name}` |" for name, source in chosen.items())
    (folder / "ATTRIBUTION.md").write_text(
        f"""# Example images: sources and licences

Written by training.ipynb (`-p write_examples True`) from the training data: {data_source}.
Each photo's licence is its source's. Publish them (the Space shows them to everyone) only when you may:
photos from a web search have unknown licences.

| file | source photo |
|---|---|
{rows}
""",
        encoding="utf-8",
    )
    return [*written, folder / "ATTRIBUTION.md"]
