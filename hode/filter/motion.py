"""Per-tile frame differencing on the camera: where something moved that the last result cannot explain.

A flow filter fed only by its own detections cannot see someone walk into a tile it skips (the
closed-loop trap, hode/filter/guard.py). The camera holds the pixels of every frame anyway, and a
static surveillance camera's empty tiles barely change from one frame to the next: a cheap pixel
difference (Reducto's on-camera feature, here per tile) says where something moved. Most movement
is the pedestrians already detected, whose tiles are kept anyway, and their heads and feet reach
into neighbour tiles that hold nobody's box centre: so the change inside the latest result's boxes
(grown by ``explain`` px) is *explained* and ignored. So is a ``border`` band along the frame's
edges, where people half out of the frame (not annotated, not yet detectable) walk. What is left is
someone new: a walk-in, or a pedestrian the detector missed.

Pure functions first (SAHI style), then :class:`FrameChange`, the one piece of state (the
previous thumbnail). Work is on a thumbnail of the green channel (every ``stride``-th pixel of every
``stride``-th row), and areas are in full-resolution pixels (samples x ``stride**2``), so thresholds
mean the same at any stride.
"""
from __future__ import annotations

import hashlib
import inspect
import logging
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from hode.errors import check

log = logging.getLogger(__name__)


THUMBNAIL = "green-v1"  # what a cached mask was computed with (part of its cache key)


def thumbnail(image: np.ndarray, stride: int) -> np.ndarray:
    """Every ``stride``-th pixel of a BGR (or grey) uint8 image: its green channel, the one closest
    to luminance (a grey conversion costs three times as much, 0.46 against 0.14 ms for a 4K frame
    at stride 4 on one core)."""
    small = image[::stride, ::stride, 1] if image.ndim == 3 else image[::stride, ::stride]
    return np.ascontiguousarray(small)


def change_mask(prev: np.ndarray, cur: np.ndarray, delta: int) -> np.ndarray:
    """Thumbnail samples whose level moved by more than ``delta``."""
    return cv2.absdiff(prev, cur) > delta


def unexplained_area(mask: np.ndarray, boxes: np.ndarray | None, tile: int, stride: int, grid: tuple[int, int],
                     explain: float = 8.0, border: float = 32.0) -> np.ndarray:
    """``(rows, cols)`` full-resolution area (px) of each ``tile`` cell that changed outside the
    ``boxes`` (x0, y0, x1, y1 in frame pixels, grown by ``explain``) and outside a ``border`` band
    along the frame's edges."""
    m = mask.astype(np.uint8)
    h, w = m.shape
    if boxes is not None and len(boxes):
        b = np.asarray(boxes, np.float64)
        x0 = np.clip(np.floor((b[:, 0] - explain) / stride), 0, None).astype(int)
        y0 = np.clip(np.floor((b[:, 1] - explain) / stride), 0, None).astype(int)
        x1 = np.ceil((b[:, 2] + explain) / stride).astype(int) + 1
        y1 = np.ceil((b[:, 3] + explain) / stride).astype(int) + 1
        for a, c, e, d in zip(x0, y0, x1, y1):
            m[c:d, a:e] = 0
    q = int(np.ceil(border / stride))
    if q > 0:
        m[:q], m[h - q:], m[:, :q], m[:, w - q:] = 0, 0, 0, 0
    rows, cols = grid
    step = tile / stride  # thumbnail samples per cell side; the last row/column may be cut short
    r_at = np.minimum(np.round(np.arange(rows + 1) * step).astype(int), h)
    c_at = np.minimum(np.round(np.arange(cols + 1) * step).astype(int), w)
    total = cv2.integral(m)[r_at][:, c_at]  # summed-area table at the cell corners: exact, any stride
    per_cell = total[1:, 1:] - total[:-1, 1:] - total[1:, :-1] + total[:-1, :-1]
    return per_cell.astype(np.float32) * float(stride * stride)


class FrameChange:
    """The change mask of each frame against the one before (``None`` for a first frame)."""

    def __init__(self, stride: int = 8, delta: int = 25) -> None:
        check(isinstance(stride, int) and not isinstance(stride, bool) and 1 <= stride <= 64,
              f"filter.guard.motion_stride must be an integer in [1, 64], got {stride!r}")
        check(isinstance(delta, int) and not isinstance(delta, bool) and 0 <= delta < 255,
              f"filter.guard.motion_delta must be an integer grey level in [0, 255), got {delta!r}")
        self.stride, self.delta = stride, delta
        self._prev: np.ndarray | None = None

    def reset(self) -> None:
        self._prev = None

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        check(isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim in (2, 3),
              f"frame differencing needs a uint8 image, got {getattr(image, 'dtype', type(image))}")
        thumb = thumbnail(image, self.stride)
        prev, self._prev = self._prev, thumb
        if prev is None or prev.shape != thumb.shape:  # first frame, or the video changed size
            return None
        return change_mask(prev, thumb, self.delta)


def change_masks(frames: Iterable, stride: int = 8, delta: int = 25, total: int | None = None) -> dict:
    """Every frame's change mask, bit-packed: ``{"bits": (T, h, ceil(w/8)) uint8, "width": w,
    "valid": (T,) bool}`` (``valid`` is False on a first frame: nothing to compare)."""
    from tqdm import tqdm

    meter, bits, valid, width = FrameChange(stride, delta), [], [], 0
    for frame in tqdm(frames, total=total, desc="frame differences", unit="frame", leave=False):
        m = meter(frame.image)
        valid.append(m is not None)
        if m is None:
            m = np.zeros(thumbnail(frame.image, stride).shape, bool)
        width = m.shape[1]
        bits.append(np.packbits(m, axis=1))
    check(len(bits) > 0, "frame differencing: the source yielded no frames")
    return {"bits": np.stack(bits), "width": width, "valid": np.array(valid, bool)}


def unpack(masks: dict, t: int) -> np.ndarray | None:
    """Frame ``t``'s change mask out of :func:`change_masks` (None where there is none)."""
    if not masks["valid"][t]:
        return None
    return np.unpackbits(masks["bits"][t], axis=1, count=int(masks["width"])).astype(bool)


_change_ms: dict[tuple, float] = {}  # (source key, stride, delta, n) -> ms, measured once per process


def frame_change_ms(frames: Iterable, stride: int, delta: int, n: int = 20) -> float:
    """Median ms of :class:`FrameChange` on one frame (thumbnail, difference) on one core: the
    pixel work the motion guard adds to the filter step (cached evaluations skip it). Measured
    once per source and setting in a process: every evaluation of a guarded filter (open and
    closed loop, each policy a refit tries) asks again, and each measurement renders frames."""
    key = (_source_key(frames), stride, delta, n)
    if key not in _change_ms:
        _change_ms[key] = _time_frame_change(frames, stride, delta, n)
    return _change_ms[key]


def _time_frame_change(frames: Iterable, stride: int, delta: int, n: int) -> float:
    import time

    meter, times, threads = FrameChange(stride, delta), [], cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for k, frame in enumerate(frames):
            if k > n:
                break
            t0 = time.perf_counter()
            meter(frame.image)
            if k:  # the first has nothing to compare
                times.append(time.perf_counter() - t0)
    finally:
        cv2.setNumThreads(threads)
    return float(np.median(times) * 1000) if times else 0.0


def _source_key(source) -> str:
    """What identifies a frame source's pixels: its class, its simple settings and its code."""
    cls = type(source)
    simple = sorted((k, v) for k, v in vars(source).items() if isinstance(v, (bool, int, float, str, tuple)))
    code = Path(inspect.getfile(cls)).read_bytes()
    return hashlib.sha256(repr((cls.__qualname__, simple)).encode() + code).hexdigest()[:16]


def cached_change_masks(source, stride: int, delta: int, cache_dir: Path | None = None) -> dict:
    """:func:`change_masks` of a source, rendered once and kept on disk (``.cache/motion``,
    compressed: the masks are sparse): rendering thousands of 4K frames takes minutes."""
    from hode.config import ROOT

    folder = Path(cache_dir) if cache_dir is not None else ROOT / ".cache" / "motion"
    path = folder / f"{getattr(source, 'name', 'source')}-{_source_key(source)}-{THUMBNAIL}-s{stride}d{delta}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return {"bits": z["bits"], "width": int(z["width"]), "valid": z["valid"]}
        except (OSError, ValueError, KeyError):
            log.warning("unreadable motion cache %s: recomputing", path)
    masks = change_masks(source, stride, delta, total=len(source) if hasattr(source, "__len__") else None)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **masks)
    tmp.replace(path)  # whole files only: an interrupted run leaves no half cache behind
    return masks
