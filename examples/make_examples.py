"""Rebuild the example images from their sources (see ATTRIBUTION.md). Run: python examples/make_examples.py

Needs Debian's tuxpaint-stamps-default and scikit-image (requirements-dev.txt). The Tux Paint bears
are transparent cut-outs: we place them on scikit-image's CC0 grass texture, so that they look like
photos rather than clip art, and save everything as JPEG. Tux Paint's American black bear is drawn in
the brown of a rare colour phase, which the model (like a visitor) reads as a grizzly: its coat is
darkened to the black that most of them wear. tests/test_model.py checks that the shipped model answers
every example right with at least 80%.
"""

from pathlib import Path

from PIL import Image, ImageEnhance
from skimage import data

STAMPS = Path("/usr/share/tuxpaint/stamps/animals/mammals/bears")
HERE = Path(__file__).parent
MARGIN = 1.2
"""Background width over the cut-out's longer side: the bear fills most of the picture, as in a photo of one."""

BEARS = {
    "black_bear.jpg": (STAMPS / "bear.png", 0.28),
    "grizzly_bear.jpg": (STAMPS / "european-bear.png", 1.0),
    "teddy_bear.jpg": (STAMPS / "toys/edward_bear.png", 1.0),
}
"""Example -> (cut-out, brightness of its coat: 1 unchanged)."""


def with_coat(bear: Image.Image, brightness: float) -> Image.Image:
    """The cut-out darkened and greyed towards black fur (its outline, the alpha channel, unchanged)."""
    if brightness == 1.0:
        return bear
    coat = ImageEnhance.Brightness(ImageEnhance.Color(bear.convert("RGB")).enhance(0.3)).enhance(brightness)
    coat.putalpha(bear.getchannel("A"))
    return coat


def on_grass(cutout: Path, brightness: float) -> Image.Image:
    bear = with_coat(Image.open(cutout).convert("RGBA"), brightness)
    width = int(max(bear.size) * MARGIN)
    canvas = Image.fromarray(data.grass()).convert("RGBA").resize((width, width * 3 // 4))
    canvas.alpha_composite(bear, ((canvas.width - bear.width) // 2, max(0, (canvas.height - bear.height) // 2)))
    return canvas.convert("RGB")


if __name__ == "__main__":
    for name, (cutout, brightness) in BEARS.items():
        on_grass(cutout, brightness).save(HERE / name, quality=90)
    Image.fromarray(data.chelsea()).save(HERE / "cat.jpg", quality=90)
    Image.fromarray(data.coffee()).save(HERE / "coffee_cup.jpg", quality=90)
