"""Rebuild the example images from their sources (see ATTRIBUTION.md). Run: python examples/make_examples.py

Needs Debian's tuxpaint-stamps-default and scikit-image (requirements-dev.txt). Transparent cut-outs
are flattened onto white, as the app does with uploads, and saved as JPEG.
"""
from pathlib import Path

from PIL import Image
from skimage import data

STAMPS = Path("/usr/share/tuxpaint/stamps/animals/mammals/bears")
HERE = Path(__file__).parent

SOURCES = {
    "black_bear.jpg": STAMPS / "bear.png",
    "grizzly_bear.jpg": STAMPS / "european-bear.png",
    "teddy_bear.jpg": STAMPS / "toys/edward_bear.png",
}


def flatten(path: Path) -> Image.Image:
    image = Image.open(path).convert("RGBA")
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, image).convert("RGB")


if __name__ == "__main__":
    for name, source in SOURCES.items():
        flatten(source).save(HERE / name, quality=90)
    Image.fromarray(data.chelsea()).save(HERE / "cat.jpg", quality=90)
    Image.fromarray(data.coffee()).save(HERE / "coffee_cup.jpg", quality=90)
