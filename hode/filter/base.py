"""The one interface for all flow filters: count-matrix history in, keep mask out."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class FlowFilter(Protocol):
    """Decides which tiles of the next frame are worth detecting.

    ``history`` is ``(T, gh, gw)`` pedestrian counts per tile for the previous frames, oldest
    first, most recent last (``T`` may be 0 at the start of a video). The result is a
    ``(gh, gw)`` boolean keep mask. ``truth`` is the current frame's true counts, given only to
    the oracle; real filters ignore it.
    """

    def __call__(self, history: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray: ...


def observe(flt, counts: np.ndarray, keep: np.ndarray, boxes: np.ndarray | None = None) -> None:
    """Tell ``flt`` that a frame it decided on came back: its detected ``counts`` per tile and the
    ``keep`` mask that produced them. A stateful filter (one that remembers which tiles it looked
    at) learns from these pairs, not from the history it is given: with several frames in flight
    the history's latest row is an older frame's than the filter's latest mask. Stateless filters
    need no ``observe`` method. A filter whose ``wants_boxes`` is true also gets the result's
    ``boxes`` (frame pixels; None when this frame is older than one already observed)."""
    fn = getattr(flt, "observe", None)
    if fn is None:
        return
    if getattr(flt, "wants_boxes", False):
        fn(counts, keep, boxes)
    else:
        fn(counts, keep)


def see(flt, image: np.ndarray, tile: int) -> None:
    """Hand ``flt`` the pixels of the frame it is about to decide on (cut into ``tile`` cells),
    before it is called: a filter that also looks at pixels (the motion guard,
    hode/filter/motion.py) measures them here. Filters that need only counts have no ``see``."""
    fn = getattr(flt, "see", None)
    if fn is not None:
        fn(image, tile)


class KeepAll:
    """``filter=none``: every tile is detected (the paper's plain parallel offloading)."""

    name = "none"

    def __init__(self, name: str = "none") -> None:
        self.name = name

    def __call__(self, history: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
        return np.ones(history.shape[1:], bool)
