"""What a filter must remember to see through its own blind spots in the closed loop.

A zero in the count history means "empty" only for a tile that was detected. A filter that skips
a tile gets a zero back whether or not someone walked in, so the net is given, per tile:

- ``since_kept``: frames since the tile was last sent for detection (0: in the latest keep mask);
- ``since_occupied``: frames since anyone was last seen in it (a long-term, per-scene map of where
  people walk, which a five-frame history cannot hold).

Both are log-scaled into [0, 1] (capped at ``CAP`` frames). With them the net can learn when an
unwatched tile next to a walkway is worth a look again, instead of a blanket periodic refresh.
"""
from __future__ import annotations

import numpy as np

CAP = 1800  # one minute at 30 fps: older than this is "never"
_SCALE = float(np.log1p(CAP))


class TileMemory:
    """Per-tile frame counters, updated once per frame from the history and the last keep mask."""

    def __init__(self) -> None:
        self.since_kept: np.ndarray | None = None
        self.since_occupied: np.ndarray | None = None

    def reset(self, grid: tuple[int, int]) -> None:
        self.since_kept = np.zeros(grid, np.float32)  # the first frames keep every tile
        self.since_occupied = np.full(grid, CAP, np.float32)  # nothing seen yet

    def ensure(self, grid: tuple[int, int]) -> None:
        """Start counting on ``grid`` if not already (first frame of a video, or a new grid)."""
        if self.since_kept is None or self.since_kept.shape != tuple(grid):
            self.reset(tuple(grid))

    def decided(self, keep: np.ndarray) -> None:
        """A frame's keep mask was sent: its tiles count as looked at from now on, before the frame
        comes back (with several frames in flight a look on its way is not a reason to look again)."""
        self.ensure(keep.shape)
        self.since_kept = np.where(keep, 0, np.minimum(self.since_kept + 1, CAP)).astype(np.float32)

    def observed(self, counts: np.ndarray) -> None:
        """A frame came back with ``counts`` detected per tile."""
        counts = np.asarray(counts)
        self.ensure(counts.shape)
        self.since_occupied = np.where(counts > 0, 0, np.minimum(self.since_occupied + 1, CAP)).astype(np.float32)

    def update(self, history: np.ndarray, last_keep: np.ndarray | None) -> None:
        """Both steps at once in a one-frame-in-flight loop: ``history[-1]`` holds the counts the
        previous keep mask produced; an empty history starts a new video."""
        if len(history) == 0:
            self.reset(history.shape[1:])
            return
        self.decided(np.ones(history.shape[1:], bool) if last_keep is None else np.asarray(last_keep, bool))
        self.observed(history[-1])

    def features(self) -> np.ndarray:
        """``(2, rows, cols)``: log-scaled since_kept and since_occupied."""
        return np.log1p(np.stack([self.since_kept, self.since_occupied])) / _SCALE
