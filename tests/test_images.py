"""Every awkward input a user can send is decoded correctly or refused with a clear ImageError."""

import io

import numpy as np
import pytest
from PIL import Image

from bear_classifier.model.images import MAX_PIXELS, ImageError, open_image
from tests.support import hard_inputs


def test_exif_rotation_is_applied():
    image = open_image(hard_inputs.exif_rotated())
    assert image.size == (40, 60)  # stored landscape 60x40 with "rotate 90" in EXIF: shown portrait
    assert image.mode == "RGB"


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "1", "CMYK", "I;16", "I", "F"])
def test_every_mode_becomes_rgb(mode):
    image = open_image(hard_inputs.in_mode(mode))
    assert image.mode == "RGB" and image.size == (64, 48)


def test_transparency_is_flattened_onto_white():
    pixel = open_image(hard_inputs.in_mode("RGBA")).getpixel((0, 0))
    assert pixel == (255, 255, 255)  # the corner is fully transparent


def test_16_bit_keeps_its_range():
    # A plain convert("RGB") clips 16-bit values above 255 to white; mid-grey must stay mid-grey.
    pixel = open_image(hard_inputs.in_mode("I;16")).getpixel((0, 0))
    assert 100 < pixel[0] < 160


@pytest.mark.parametrize(
    "name, data, words",
    [
        ("empty", b"", "No image"),
        ("text", b"hello, I am not a picture", "not an image"),
        ("truncated", hard_inputs.truncated_jpeg(), "not an image"),
        ("garbage", bytes(range(256)) * 40, "not an image"),
        ("bomb", hard_inputs.decompression_bomb(), "too large"),
    ],
)
def test_bad_bytes_get_a_clear_message(name, data, words):
    with pytest.raises(ImageError, match=words):
        open_image(data)


def test_missing_file_and_none():
    with pytest.raises(ImageError, match="Could not read"):
        open_image("/nonexistent/bear.jpg")
    with pytest.raises(ImageError, match="No image"):
        open_image(None)


def test_limit_is_the_documented_one():
    side = int(MAX_PIXELS**0.5) + 1
    with pytest.raises(ImageError, match="too large"):
        open_image(hard_inputs.png_header_only(side, side))


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((10, 12), np.uint8),
        np.zeros((10, 12, 3), np.uint8),
        np.zeros((10, 12, 4), np.uint8),
        np.full((10, 12, 3), 0.5, np.float32),
        np.full((10, 12), 40000, np.uint16),
    ],
)
def test_arrays(array):
    assert open_image(array).size == (12, 10)


def test_bad_arrays():
    with pytest.raises(ImageError, match="shape"):
        open_image(np.zeros((2, 2, 7), np.uint8))
    with pytest.raises(ImageError, match="NaN"):
        open_image(np.full((4, 4), np.nan, np.float32))


def test_draft_decodes_big_jpegs_smaller():
    big = io.BytesIO()
    Image.new("RGB", (4000, 3000), (90, 60, 30)).save(big, "JPEG")
    image = open_image(big.getvalue(), draft_size=448)
    assert 448 <= min(image.size) < 3000
