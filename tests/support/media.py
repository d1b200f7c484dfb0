"""Test images and videos: a pan across the street photo ultralytics ships, crafted PNG headers."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest


def png_header(w: int, h: int) -> bytes:
    """A PNG whose header claims ``w x h`` pixels (a decompression bomb's calling card)."""
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


def bus_image() -> np.ndarray:
    import ultralytics

    path = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    if not path.is_file():
        pytest.skip("ultralytics ships no assets/bus.jpg in this version")
    return cv2.imread(str(path))


def bus_pan(n: int, size=(640, 480)) -> list[np.ndarray]:
    """``n`` frames panning right across the street photo (people walk out of view at the left)."""
    img = bus_image()[300:1020]  # 810 x 720: the street level
    w = 720 * size[0] // size[1]
    return [cv2.resize(img[:, 12 * k: 12 * k + w], size, interpolation=cv2.INTER_AREA) for k in range(n)]


def write_video(path: Path, frames: list[np.ndarray], fourcc: str = "mp4v", fps: float = 10) -> Path:
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(f)
    vw.release()
    return path
