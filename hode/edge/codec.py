"""Tile payloads on the wire: JPEG (default, quality configurable), PNG (lossless) or raw array bytes.

The worker decodes with :func:`decode_tile`, which checks everything a sender could get wrong
(bytes that do not decode, a shape that does not match the declared one, a dtype other than
uint8, a side beyond the limit) and raises :class:`PayloadError`; the server turns that into
INVALID_ARGUMENT.
"""
from __future__ import annotations

import os

import numpy as np

from hode.edge import worker_pb2 as pb
from hode.errors import DataError, check

MAX_SIDE = 8192  # px: larger than any frame the harness sends (4K is 3840 x 2160)
# OpenCV refuses to decode images larger than this many pixels (a decompression bomb guard);
# set before cv2 is imported anywhere in the process.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_SIDE * MAX_SIDE))

import cv2  # noqa: E402

ENCODINGS = {"jpeg": pb.JPEG, "raw": pb.RAW, "png": pb.PNG}


class PayloadError(DataError):
    """A tile payload that cannot be decoded into the image it declares."""


def check_encoding(encoding: str, quality: int) -> None:
    check(encoding in ENCODINGS, f"runner.backend.transport.encoding must be one of {sorted(ENCODINGS)}, got {encoding!r}")
    check(isinstance(quality, int) and 1 <= quality <= 100,
          f"runner.backend.transport.jpeg_quality must be an integer in [1, 100], got {quality!r}")


def encode_tile(image: np.ndarray, item_id: int, encoding: str = "jpeg", quality: int = 90) -> pb.Tile:
    """One BGR uint8 image (a crop view is fine) as a :class:`worker_pb2.Tile`."""
    check(image.ndim == 3 and image.dtype == np.uint8, f"tile {item_id}: expected an (H, W, 3) uint8 image, "
          f"got {image.dtype} {image.shape}", PayloadError)
    h, w, c = image.shape
    kind = ENCODINGS[encoding]
    if kind == pb.RAW:
        data = np.ascontiguousarray(image).tobytes()
    else:
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if kind == pb.JPEG else []
        ok, buf = cv2.imencode(".jpg" if kind == pb.JPEG else ".png", image, params)
        check(ok, f"tile {item_id}: OpenCV could not encode it as {encoding}", PayloadError)
        data = buf.tobytes()
    return pb.Tile(item_id=item_id, encoding=kind, data=data, height=h, width=w, channels=c, dtype="uint8")


def check_tile(tile: pb.Tile, max_side: int = MAX_SIDE) -> None:
    """Everything about a tile that can be checked without decoding its pixels (microseconds): the
    declared size, channels and dtype, a raw payload's length, and a JPEG's or PNG's own header
    against the declared size. The worker checks every tile of a request this way before queueing
    any, so a bad request fails whole; only damage past the header waits for :func:`decode_tile`."""
    h, w, c = int(tile.height), int(tile.width), int(tile.channels)
    name = f"tile {tile.item_id}"
    check(h > 0 and w > 0, f"{name}: declared size {w}x{h} is empty", PayloadError)
    check(h <= max_side and w <= max_side, f"{name}: declared size {w}x{h} exceeds the limit of {max_side} px a side",
          PayloadError)
    check(c == 3, f"{name}: expected 3 channels (BGR), got {c}", PayloadError)
    # Read the field once: each access of a protobuf bytes field returns a fresh copy of the payload
    # (1.3 MB for a raw tile; three accesses cost ~0.15 ms of the per-tile overhead).
    data = tile.data
    check(len(data) > 0, f"{name}: empty payload", PayloadError)
    if tile.encoding == pb.RAW:
        check(tile.dtype == "uint8", f"{name}: raw dtype must be 'uint8', got {tile.dtype!r}", PayloadError)
        check(len(data) == h * w * c, f"{name}: raw payload has {len(data)} bytes, "
              f"{h}x{w}x{c} uint8 needs {h * w * c}", PayloadError)
        return
    check(tile.encoding in (pb.JPEG, pb.PNG), f"{name}: unknown encoding {tile.encoding}", PayloadError)
    kind = pb.Encoding.Name(tile.encoding)
    size = jpeg_size(data) if tile.encoding == pb.JPEG else png_size(data)
    check(size is not None, f"{name}: payload is not a valid {kind} image (no readable header)", PayloadError)
    check(size == (h, w), f"{name}: {kind} header says {size[1]}x{size[0]}, declared {w}x{h}", PayloadError)


# Start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8 and CC are not frames.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's start-of-frame segment, or None when there is none before the
    image data (not a JPEG, or a damaged one)."""
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # segments without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in _SOF:
            if length < 7 or i + 9 > n:
                return None
            return int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
        i += 2 + length
    return None


def png_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a PNG's IHDR chunk, or None when the payload does not start like a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or len(data) < 24:
        return None
    return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")


def decode_tile(tile: pb.Tile, max_side: int = MAX_SIDE, checked: bool = False) -> np.ndarray:
    """The (H, W, 3) uint8 BGR image of a tile, or :class:`PayloadError` naming what is wrong.
    ``checked``: :func:`check_tile` already passed (skip it)."""
    if not checked:
        check_tile(tile, max_side)
    h, w, c = int(tile.height), int(tile.width), int(tile.channels)
    name = f"tile {tile.item_id}"
    data = tile.data  # once: see check_tile
    if tile.encoding == pb.RAW:
        return np.frombuffer(data, np.uint8).reshape(h, w, c)
    try:
        # As stored, EXIF orientation ignored: the pixels are the camera's tile, the size is the header's.
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as e:  # e.g. beyond OPENCV_IO_MAX_IMAGE_PIXELS
        raise PayloadError(f"{name}: cannot decode: {str(e).strip().splitlines()[-1][:120]}") from None
    check(image is not None, f"{name}: payload is not a valid {pb.Encoding.Name(tile.encoding)} image", PayloadError)
    check(image.shape == (h, w, c), f"{name}: decoded image is {image.shape[1]}x{image.shape[0]}, "
          f"declared {w}x{h}", PayloadError)
    return image
