"""Awkward images, made in memory: the inputs users really send (phones, scanners, hostile files)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def exif_rotated() -> bytes:
    """A 60x40 JPEG whose EXIF says "rotate 90°", as phones write portrait photos."""
    image = Image.new("RGB", (60, 40), (120, 80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif)


def in_mode(mode: str) -> bytes:
    """A 64x48 picture stored in `mode` (PNG, or TIFF where PNG cannot hold the mode)."""
    rgb = Image.new("RGB", (64, 48), (130, 90, 60))
    if mode == "RGBA":
        image = rgb.convert("RGBA")
        image.putpixel((0, 0), (0, 0, 0, 0))
    elif mode == "I;16":
        image = Image.fromarray(np.full((48, 64), 33000, np.uint16))
    elif mode == "I":
        image = Image.fromarray(np.full((48, 64), 33000, np.int32))
    elif mode == "F":
        image = Image.fromarray(np.full((48, 64), 0.5, np.float32))
    else:
        image = rgb.convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
    return encode(image, fmt)


def truncated_jpeg() -> bytes:
    data = encode(Image.effect_noise((256, 256), 60).convert("RGB"), "JPEG")
    return data[: len(data) // 2]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims to be `width`x`height`: what a decompression bomb looks like before decoding."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def decompression_bomb() -> bytes:
    """A tiny file that would decode to 40000x40000 pixels (4.8 GB)."""
    return png_header_only(40_000, 40_000)


def phone_photo(width: int = 4000, height: int = 3000) -> bytes:
    """A large, detailed JPEG like a phone camera writes."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
    return encode(Image.fromarray(small).resize((width, height), Image.BILINEAR), "JPEG", quality=90)


def huge_png(side: int) -> bytes:
    """A real PNG of side x side black pixels: a few hundred KB that decode to side² x 3 bytes."""
    return encode(Image.new("L", (side, side)), "PNG", optimize=True)


def eps_loop() -> bytes:
    """66 bytes that keep Ghostscript busy forever, if a server hands them to it."""
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n{ } loop\n"


def dds_unknown_format() -> bytes:
    """A DDS header with a pixel format Pillow does not implement: NotImplementedError when decoding."""
    header = struct.pack("<7I", 124, 0x1007, 8, 8, 0, 0, 0) + b"\0" * 44 + struct.pack("<2I", 32, 0x4) + b"ZZZZ"
    return b"DDS " + header + b"\0" * 40 + b"\0" * 256


def qoi_cut() -> bytes:
    return b"qoif" + struct.pack(">II", 8, 8) + bytes([3, 0]) + b"\xfe" * 3


def avif_damaged() -> bytes:
    """An AVIF whose item table is broken: Pillow's AVIF decoder raises RuntimeError."""
    data = bytearray(encode(Image.new("RGB", (64, 64), (90, 60, 30)), "AVIF"))
    data[84] = 0
    return bytes(data)


def corrupt_decoder_files() -> dict[str, bytes]:
    """Files whose decoders raise errors other than OSError, or never return."""
    return {"x.dds": dds_unknown_format(), "x.qoi": qoi_cut(), "x.avif": avif_damaged(), "x.eps": eps_loop()}


def many_scans_jpeg(width: int = 8000, height: int = 6250, scans: int = 1000) -> bytes:
    """A progressive greyscale JPEG of a flat picture whose last scan (an AC refinement: only end-of-block
    runs, about 76 bytes at 8000 x 6250) is repeated: each repeat is another pass over every block when
    decoded. libjpeg only warns about the repeated refinement."""
    data = encode(Image.new("L", (width, height), 128), "JPEG", progressive=True, quality=90)
    last_scan = data.rfind(b"\xff\xda")
    tables = data.rfind(b"\xff\xc4", 0, last_scan)  # the Huffman table written for that scan, when there is one
    start = tables if tables > data.rfind(b"\xff\xda", 0, last_scan) else last_scan
    return data[:-2] + data[start:-2] * (scans - 1) + b"\xff\xd9"
