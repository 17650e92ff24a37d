"""Open whatever a user sends as a clean RGB picture, or fail with a message a person can act on.

Every input path (web upload, API call, a test calling `predict` directly) comes through `open_image`,
so EXIF rotation, exotic modes and hostile files are handled in one place, not left to Gradio.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

MAX_PIXELS = 50_000_000
"""Largest image we decode (a 50 MP phone photo); bigger ones are refused as possible decompression bombs."""
MAX_SIDE = 16_384
"""Longest side we decode (WebP's own limit; a 50 MP photo is 8,160 px): a 50,000 x 1,000 strip is no photo."""
MAX_JPEG_SCANS = 32
"""A baseline JPEG has 1 scan, libjpeg's progressive script 10 (6 in greyscale); the 1,130 JPEGs in the training
and external photos have at most 14. Each scan of a progressive JPEG is a pass over the whole picture: 8000 x 6250
px in 76-byte refinement scans cost 33 ms of CPU each, 55 s for a 76 KB file (BENCHMARKS.md, hostile callers)."""
MAX_JPEG_SEGMENTS = 256
"""Marker segments (tables, scans, metadata) before the picture ends: the same photos have at most 29."""
MAX_PNG_CHUNKS = 16_384
"""Chunks in a PNG: Pillow reads each in Python, so 870,000 empty IDAT chunks in 10 MB cost seconds of CPU.
libpng writes 8 KB IDAT chunks (Pillow 64 KB): 16,384 of them hold 128 MB, more than any photo we take."""
MAX_TILES = MAX_SIDE
"""Tiles (TIFF strips or tiles) of one picture: Pillow sets up a decoder per tile in Python; a TIFF written a
row a strip at the tallest side we take has this many, a crafted one of 1x1 tiles has millions."""
ORIENTATION = 0x0112
"""The EXIF tag phones set instead of rotating a portrait photo's pixels."""
CONVERT_PIXELS = 12_000_000
"""Above this, a transparent or 16-bit picture is reduced before it is flattened or rescaled (`_shrunk`)."""
MAX_FILE_BYTES = 256 * 2**20
"""Largest file we read into memory (the app takes uploads of 10 MB; a 50 MP noisy RGBA PNG is about 200 MB)."""

FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
"""What we decode (MPO: phones' multi-picture JPEGs). Never EPS/PS (Pillow runs Ghostscript on them), nor the
rarely used decoders where a crafted file raises odd errors or spins."""

ImageInput = str | Path | bytes | Image.Image | np.ndarray

NOT_READABLE = (
    "This file is not an image we can read (corrupt, truncated, not an image, or a format other than "
    "JPEG, PNG, WebP, GIF, BMP, TIFF or AVIF). Try a JPEG or PNG photo."
)
BAD_JPEG = (
    "This file is not an image we can read: its JPEG structure is damaged or truncated. Save it again as an "
    "ordinary JPEG."
)
SLOW_DECODER = (
    "This image is stored in a way that is very slow to decode ({what}): save it again as an ordinary JPEG or PNG."
)


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
            data = source if isinstance(source, bytes) else _read(Path(source))
            _check_structure(data)  # before Image.open: a layout libjpeg or Pillow would spin on is refused here
            image = Image.open(io.BytesIO(data), formats=_readable_formats())
            _check_size(image)
            _check_decoders(image)
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
        except MemoryError:
            raise  # over a decoder worker's memory budget (decoding.py): not the file's fault alone
        except Exception as e:  # a crafted file can make a decoder raise anything (RuntimeError, IndexError...)
            raise ImageError(NOT_READABLE) from e


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
    if image.width * image.height > MAX_PIXELS or max(image.size) > MAX_SIDE:
        raise ImageError(_too_large_message(image.size))
    if min(image.size) < 1:
        raise ImageError("This image is empty (zero pixels).")


def _read(path: Path) -> bytes:
    if path.stat().st_size > MAX_FILE_BYTES:  # a sparse 64 GB file is one stat away, not a MemoryError
        raise ImageError(f"This file is over {MAX_FILE_BYTES // 2**20} MB: no photo we classify is that large.")
    return path.read_bytes()


def _check_structure(data: bytes) -> None:
    if data.startswith(b"\xff\xd8"):
        _check_jpeg_structure(data)
    elif data.startswith(b"\x89PNG\r\n\x1a\n"):
        _check_png_structure(data)


def _check_decoders(image: Image.Image) -> None:
    """Refuse before decoding what only Pillow's pure-Python decoders read (RLE BMP, ...) or what takes a
    decoder per tile by the million: their cost is set by the file, not by its pixels."""
    tiles = getattr(image, "tile", None) or []
    if len(tiles) > MAX_TILES:
        raise ImageError(SLOW_DECODER.format(what=f"{len(tiles):,} tiles"))
    slow = {tile[0] for tile in tiles} & set(Image.DECODERS)  # registered from Python: Pillow's Python decoders
    if slow:
        raise ImageError(SLOW_DECODER.format(what=", ".join(sorted(slow))))


def _check_jpeg_structure(data: bytes) -> None:
    """Walks the marker segments and scans of the first picture in a JPEG, without decoding, and refuses one
    that is not a well-formed marker sequence (libjpeg skips junk and decodes on, so one junk byte used to end
    this walk and its limits) or has too many segments or scans. Each scan's entropy-coded data is skipped (there
    0xFF is always followed by 0x00 or a restart marker)."""
    position, segments, scans, end = 2, 0, 0, len(data)
    while True:
        if position + 2 > end or data[position] != 0xFF:
            raise ImageError(BAD_JPEG)  # truncated, or junk where a marker belongs
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xD9:  # end of image
            return
        if marker in (0x00, 0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no segment starts so
            raise ImageError(BAD_JPEG)
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if length < 2 or position + 2 + length > end:
            raise ImageError(BAD_JPEG)
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise ImageError(
                f"This JPEG has more than {MAX_JPEG_SEGMENTS} segments: save it again as an ordinary JPEG."
            )
        position += 2 + length
        if marker == 0xDA:  # start of scan: skip its entropy-coded data
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise ImageError(
                    f"This JPEG has more than {MAX_JPEG_SCANS} scans (a camera writes 1 to 14): save it again as an "
                    "ordinary JPEG."
                )
            position = _next_marker(data, position)


def _check_png_structure(data: bytes) -> None:
    """Counts a PNG's chunks without decoding (`MAX_PNG_CHUNKS`); a damaged one is left to Pillow."""
    position, chunks = 8, 0
    while position + 12 <= len(data):
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise ImageError(SLOW_DECODER.format(what=f"over {MAX_PNG_CHUNKS:,} PNG chunks"))
        if data[position + 4 : position + 8] == b"IEND":
            return
        position += 12 + int.from_bytes(data[position : position + 4], "big")


def _next_marker(data: bytes, position: int) -> int:
    while (position := data.find(b"\xff", position)) != -1 and position + 1 < len(data):
        following = data[position + 1]
        if following == 0xFF:
            position += 1
        elif following == 0x00 or 0xD0 <= following <= 0xD7:
            position += 2
        else:
            return position
    return len(data)


def _too_large_message(size: tuple[int, int] | None = None) -> str:
    shown = f" ({size[0]}x{size[1]})" if size else ""
    return (
        f"This image is too large{shown}: at most {MAX_PIXELS // 1_000_000} megapixels and {MAX_SIDE:,} pixels a side, "
        "please resize it."
    )


def _shrunk(image: Image.Image) -> Image.Image:
    """`image` reduced (by averaging whole blocks) to at most `CONVERT_PIXELS`, before a conversion that costs a
    float or RGBA copy per pixel: a 50 MP RGBA or 16-bit PNG is then flattened within a decoder's budgets instead of
    refused; the network reads 224 px a side."""
    needed = math.sqrt(image.width * image.height / CONVERT_PIXELS)
    if needed <= 1:
        return image
    factor = 2 ** math.ceil(math.log2(needed))  # Pillow reduces by 2, 4 and 8 on fast paths: by 3 takes twice as long
    if image.mode.startswith("I;16"):
        image = image.convert("I")  # reduce() takes 32-bit integers, not 16-bit ones
    elif image.mode == "P":
        image = image.convert("RGBA")
    return image.reduce(factor)


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation that phones store instead of rotating the pixels."""
    try:
        if image.getexif().get(ORIENTATION, 1) == 1:
            return image  # exif_transpose would copy the whole picture (0.2 s of CPU at 50 MP) to change nothing
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


RESCALE_ROWS = 256
"""Rows rescaled at a time: a float64 copy of a whole 50 MP 16-bit photo is 400 MB, more than a decoder worker's
memory budget leaves once the photo itself is decoded."""


def _rescale_to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ImageError("The image contains NaN or infinite values.")
    low, top = float(array.min()), float(array.max())
    unit = array.dtype.kind == "f" and top <= 1.0 and low >= 0.0  # float images in [0, 1]
    high = 65535.0 if top > 255 else 255.0
    rescaled = np.empty(array.shape, np.uint8)
    for start in range(0, array.shape[0], RESCALE_ROWS):
        block = array[start : start + RESCALE_ROWS].astype(np.float64)
        block = np.round(block * 255) if unit else np.round(block / high * 255)
        rescaled[start : start + RESCALE_ROWS] = np.clip(block, 0, 255)
    return rescaled


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float greyscale: a plain convert("RGB") clips everything above 255 to white.
        return _from_array(np.asarray(_shrunk(image))).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = _shrunk(image)
        # Flatten transparency onto white, as the training data was prepared: pasted through its alpha onto a white
        # RGB picture, which needs the alpha plane and one RGB copy (a 50 MP RGBA photo: 200 MB more, where
        # compositing in RGBA took 600 MB and passed a decoder worker's memory budget).
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")
