"""Open whatever a user sends as a clean RGB picture, or fail with a message a person can act on.

Every input path (web upload, API call, a test calling `predict` directly) comes through `open_image`,
so EXIF rotation, exotic modes and hostile files are handled in one place, not left to Gradio.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

MAX_PIXELS = 50_000_000
"""Largest image we decode (a 50 MP phone photo); bigger ones are refused as possible decompression bombs."""

FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
"""What we decode (MPO: phones' multi-picture JPEGs). Never EPS/PS (Pillow runs Ghostscript on them), nor the
rarely used decoders where a crafted file raises odd errors or spins."""

ImageInput = str | Path | bytes | Image.Image | np.ndarray


class ImageError(ValueError):
    """The input is not a picture we can classify. The message is meant for the user."""


def open_image(source: ImageInput | None, draft_size: int | None = None) -> Image.Image:
    """Decode `source` to an upright RGB image.

    `draft_size` lets JPEG decoding skip detail that the model would throw away anyway: the
    decoder scales by 1/2, 1/4 or 1/8 while keeping both sides at least this large.
    """
    if source is None or (isinstance(source, (bytes, str)) and len(source) == 0):
        raise ImageError("No image received: upload a photo (JPEG, PNG, WebP, ...).")
    if isinstance(source, Image.Image):
        return _to_rgb(_upright(source))
    if isinstance(source, np.ndarray):
        return _to_rgb(_from_array(source))
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; we refuse those too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source, formats=_readable_formats())
            _check_size(image)
            if draft_size and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image.load()  # decode now, so truncated data fails here and not deep in the model
            return _to_rgb(_upright(image))
        except ImageError:
            raise
        except (FileNotFoundError, IsADirectoryError) as e:
            raise ImageError(f"Could not read the file: {e.strerror}.") from e
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(_too_large_message()) from e
        except Exception as e:  # a crafted file can make a decoder raise anything (RuntimeError, IndexError...)
            raise ImageError(
                "This file is not an image we can read (corrupt, truncated, not an image, or a format other than "
                "JPEG, PNG, WebP, GIF, BMP, TIFF or AVIF). Try a JPEG or PNG photo."
            ) from e


def uploaded_file(path: str | None, upload_folder: str | Path) -> str:
    """`path` if it names a file that a caller uploaded to this server, else `ImageError`.

    A caller of the raw API can name any path (or a URL, or send a data URL instead): only files in
    Gradio's upload folder are ever read, so no server file can be classified or copied.
    """
    if not path:
        raise ImageError("No image received: upload a photo file (JPEG, PNG, WebP, ...), not a URL or data URL.")
    file = Path(path).resolve()
    if not file.is_relative_to(Path(upload_folder).resolve()) or not file.is_file():
        raise ImageError("This server only reads photos uploaded to it: upload the photo file.")
    return str(file)


def _readable_formats() -> list[str]:
    Image.init()  # registers every plugin Pillow has, so AVIF counts only where this Pillow reads it
    return [name for name in FORMATS if name in Image.OPEN]


def _check_size(image: Image.Image) -> None:
    if image.width * image.height > MAX_PIXELS:
        raise ImageError(_too_large_message(image.size))
    if min(image.size) < 1:
        raise ImageError("This image is empty (zero pixels).")


def _too_large_message(size: tuple[int, int] | None = None) -> str:
    shown = f" ({size[0]}x{size[1]})" if size else ""
    return f"This image is too large{shown}: at most {MAX_PIXELS // 1_000_000} megapixels, please resize it."


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation that phones store instead of rotating the pixels."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block should not stop an otherwise fine photo
        return image


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or array.size == 0:
        raise ImageError(f"An image array must be HxW, HxWx3 or HxWx4, got shape {array.shape}.")
    if array.dtype != np.uint8:
        array = _rescale_to_uint8(array)
    return Image.fromarray(array)


def _rescale_to_uint8(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ImageError("The image contains NaN or infinite values.")
    if array.max() <= 1.0 and array.min() >= 0.0:  # float images in [0, 1]
        return np.round(array * 255).astype(np.uint8)
    high = 65535.0 if array.max() > 255 else 255.0
    return np.clip(np.round(array / high * 255), 0, 255).astype(np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float greyscale: a plain convert("RGB") clips everything above 255 to white.
        return _from_array(np.asarray(image)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Flatten transparency onto white, as the training data was prepared.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
