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
    check(encoding in ENCODINGS, f"runner.backend.encoding must be one of {sorted(ENCODINGS)}, got {encoding!r}")
    check(isinstance(quality, int) and 1 <= quality <= 100,
          f"runner.backend.jpeg_quality must be an integer in [1, 100], got {quality!r}")


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


def decode_tile(tile: pb.Tile, max_side: int = MAX_SIDE) -> np.ndarray:
    """The (H, W, 3) uint8 BGR image of a tile, or :class:`PayloadError` naming what is wrong."""
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
        return np.frombuffer(data, np.uint8).reshape(h, w, c)
    check(tile.encoding in (pb.JPEG, pb.PNG), f"{name}: unknown encoding {tile.encoding}", PayloadError)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as e:  # e.g. beyond OPENCV_IO_MAX_IMAGE_PIXELS
        raise PayloadError(f"{name}: cannot decode: {str(e).strip().splitlines()[-1][:120]}") from None
    check(image is not None, f"{name}: payload is not a valid {pb.Encoding.Name(tile.encoding)} image", PayloadError)
    check(image.shape == (h, w, c), f"{name}: decoded image is {image.shape[1]}x{image.shape[0]}, "
          f"declared {w}x{h}", PayloadError)
    return image
