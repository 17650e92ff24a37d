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


# Files whose decoders are pure Python or unbounded (issue 28): refused before decoding.
def rle_bmp(width: int = 8000, rows: int = 3200) -> bytes:
    """An RLE8 BMP whose rows end after one pixel (about 13 KB): Pillow's pure-Python RLE decoder takes seconds."""
    pixels = b"".join(b"\x01\x07\x00\x00" for _ in range(rows)) + b"\x00\x01"  # a 1-pixel run, end of line; end
    palette = b"".join(bytes([i, i, i, 0]) for i in range(256))
    info = struct.pack("<IiiHHIIiiII", 40, width, rows, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels


def tiled_tiff(width: int = 4096, height: int = 2048, tile: int = 16) -> bytes:
    """An uncompressed greyscale TIFF in 16 x 16 tiles (32,768 of them), all pointing at one tile's bytes:
    Pillow sets up a decoder per tile in Python."""
    count = (width // tile) * (height // tile)
    entries = [
        (256, 4, 1, width),  # ImageWidth
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: black is zero
        (277, 3, 1, 1),  # SamplesPerPixel
        (322, 3, 1, tile),  # TileWidth
        (323, 3, 1, tile),  # TileLength
        (324, 4, count, None),  # TileOffsets
        (325, 4, count, None),  # TileByteCounts
    ]
    directory_size = 2 + 12 * len(entries) + 4
    offsets_at = 8 + directory_size
    counts_at = offsets_at + 4 * count
    data_at = counts_at + 4 * count
    directory = struct.pack("<H", len(entries))
    for tag, kind, n, value in entries:
        value = {324: offsets_at, 325: counts_at}.get(tag, value)
        directory += (
            struct.pack("<HHII", tag, kind, n, value) if kind == 4 else struct.pack("<HHIHH", tag, kind, n, value, 0)
        )
    directory += struct.pack("<I", 0)
    arrays = struct.pack(f"<{count}I", *[data_at] * count) + struct.pack(f"<{count}I", *[tile * tile] * count)
    return b"II*\0" + struct.pack("<I", 8) + directory + arrays + bytes([128]) * (tile * tile)


def idat_flood(chunks: int = 20_000) -> bytes:
    """A 64 x 64 PNG whose compressed pixels are spread over `chunks` IDAT chunks of a byte or none (about 260 KB):
    Pillow reads every chunk in Python."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    pixels = zlib.compress(b"".join(b"\0" + b"\x80" * 64 for _ in range(64)))
    parts = [pixels[i : i + 1] for i in range(len(pixels))] + [b""] * (chunks - len(pixels))
    header = struct.pack(">IIBBBBB", 64, 64, 8, 0, 0, 0, 0)
    idat = b"".join(chunk(b"IDAT", part) for part in parts)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + idat + chunk(b"IEND", b"")


def junk_byte_jpeg(scans: int = 1000) -> bytes:
    """`many_scans_jpeg` with one 0x00 byte after its first segment: libjpeg skips the byte and decodes on, and
    a marker walk that stopped at the first byte out of place let the scans through."""
    data = many_scans_jpeg(scans=scans)
    first_segment_end = 4 + int.from_bytes(data[4:6], "big")
    return data[:first_segment_end] + b"\0" + data[first_segment_end:]


def comment_flood_jpeg(comments: int = 300, size: int = 1000) -> bytes:
    """A small JPEG with `comments` comment segments of `size` bytes after its first segment and a junk byte
    (which used to end the marker walk before it counted any)."""
    data = encode(Image.new("RGB", (64, 48), (120, 80, 40)), "JPEG")
    first_segment_end = 4 + int.from_bytes(data[4:6], "big")
    comment = b"\xff\xfe" + struct.pack(">H", size + 2) + b"c" * size
    return data[:first_segment_end] + b"\0" + comment * comments + data[first_segment_end:]


def large_png(mode: str, width: int = 8160, height: int = 6120) -> bytes:
    """A flat 50 MP PNG in `mode` ("RGBA", half transparent, or "I;16" greyscale): a few hundred KB that decode
    to 200 MB (RGBA) or 100 MB (16-bit)."""
    if mode == "RGBA":
        return encode(Image.new("RGBA", (width, height), (120, 80, 40, 128)), "PNG")
    return encode(Image.fromarray(np.full((height, width), 33000, np.uint16)), "PNG")
