"""Bounds on what one input may cost: pixels per frame, ground-truth boxes per frame, frames per
sequence (docs/security.md).

A 240-megapixel PNG, a resize to 60000x60000 or a header that merely *claims* such a size would
otherwise be decoded or allocated before anything looks at it (gigabytes, minutes). Sizes are read
from image headers without decoding (:func:`image_size`) and checked against these limits first.
The limits are process-wide, set from the config's ``limits:`` block (:func:`configure`).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from hode.errors import DataError, HodeError

DEFAULTS = {
    "max_pixels": 100_000_000,  # per frame: decoded image, resize target, detector input side squared
    "max_boxes": 10_000,  # ground-truth boxes per frame (PANDA's densest frames hold a few thousand)
    "max_frames": 1_000_000,  # frames of one sequence (9 h at 30 fps); a MOT frame number beyond is a broken row
}
_current = dict(DEFAULTS)


def configure(limits: Any = None) -> None:
    """Set the limits from a mapping (the config's ``limits:``); missing keys keep their defaults."""
    from hode.errors import ConfigError, check

    new = dict(DEFAULTS)
    for k, v in dict(limits or {}).items():
        check(k in DEFAULTS, f"limits.{k}: unknown limit (known: {', '.join(DEFAULTS)})", ConfigError)
        check(isinstance(v, int) and not isinstance(v, bool) and v > 0,
              f"limits.{k} must be a positive integer, got {v!r}", ConfigError)
        new[k] = v
    _current.update(new)


def get(name: str) -> int:
    return _current[name]


def mp(pixels: float) -> str:
    """``240.0 MP``: a pixel count as people read it."""
    return f"{pixels / 1e6:.1f} MP"


def check_pixels(size: tuple[int, int], what: str, kind: type[HodeError] = DataError) -> None:
    """Refuse a ``(W, H)`` frame above ``limits.max_pixels``; ``what`` names it (a file, a setting)."""
    w, h = int(size[0]), int(size[1])
    if w * h > _current["max_pixels"]:
        raise kind(f"{what} is {w}x{h} = {mp(w * h)}, above the limit of {mp(_current['max_pixels'])} per frame "
                   "(limits.max_pixels)")


def check_boxes(n: int, what: str) -> None:
    """Refuse a frame with more ground-truth boxes than ``limits.max_boxes`` (the mAP step would take hours)."""
    if n > _current["max_boxes"]:
        raise DataError(f"{what}: {n} boxes in one frame, above the limit of {_current['max_boxes']} "
                        "(limits.max_boxes)")


def check_frames(n: int, what: str) -> None:
    """Refuse a sequence longer than ``limits.max_frames`` (``what`` names where the length comes from)."""
    if n > _current["max_frames"]:
        raise DataError(f"{what} is {n}, beyond the limit of {_current['max_frames']} frames per sequence "
                        "(limits.max_frames)")


def image_size(path: Path) -> tuple[int, int] | None:
    """(W, H) from an image file's header, without decoding the pixels; None when unreadable."""
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the header is all that is read; the limit here is max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                return im.size
    except Exception:
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def check_image_file(path: Path, what: str | None = None) -> tuple[int, int] | None:
    """The header size of an image file, refused when above ``limits.max_pixels``; None when unreadable."""
    size = image_size(path)
    if size is not None:
        check_pixels(size, what or str(path))
    return size
