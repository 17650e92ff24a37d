"""Rebuild the example images from their sources (see ATTRIBUTION.md). Run: python examples/make_examples.py

Needs Debian's tuxpaint-stamps-default and scikit-image (requirements-dev.txt). The Tux Paint bears
are transparent cut-outs: we place them on scikit-image's CC0 grass texture, so that they look like
photos rather than clip art, and save everything as JPEG.
"""

from pathlib import Path

from PIL import Image
from skimage import data

STAMPS = Path("/usr/share/tuxpaint/stamps/animals/mammals/bears")
HERE = Path(__file__).parent

BEARS = {
    "black_bear.jpg": STAMPS / "bear.png",
    "grizzly_bear.jpg": STAMPS / "european-bear.png",
    "teddy_bear.jpg": STAMPS / "toys/edward_bear.png",
}


def on_grass(cutout: Path) -> Image.Image:
    bear = Image.open(cutout).convert("RGBA")
    width = int(max(bear.size) * 1.3)
    canvas = Image.fromarray(data.grass()).convert("RGBA").resize((width, width * 3 // 4))
    canvas.alpha_composite(bear, ((canvas.width - bear.width) // 2, max(0, (canvas.height - bear.height) // 2)))
    return canvas.convert("RGB")


if __name__ == "__main__":
    for name, cutout in BEARS.items():
        on_grass(cutout).save(HERE / name, quality=90)
    Image.fromarray(data.chelsea()).save(HERE / "cat.jpg", quality=90)
    Image.fromarray(data.coffee()).save(HERE / "coffee_cup.jpg", quality=90)
