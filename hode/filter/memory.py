"""What a filter must remember to see through its own blind spots in the closed loop.

A zero in the count history means "empty" only for a tile that was detected. A filter that skips
a tile gets a zero back whether or not someone walked in, so the net is given, per tile:

- ``since_kept``: frames since the tile was last detected (0: the latest counts are a real look);
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

    def update(self, history: np.ndarray, last_keep: np.ndarray | None) -> None:
        """Advance one frame: ``history[-1]`` holds the counts the previous keep mask produced."""
        grid = history.shape[1:]
        if self.since_kept is None or self.since_kept.shape != grid or len(history) == 0:
            self.reset(grid)  # start of a video (or a new grid)
            if len(history) == 0:
                return
        kept = np.ones(grid, bool) if last_keep is None else last_keep
        self.since_kept = np.where(kept, 0, np.minimum(self.since_kept + 1, CAP)).astype(np.float32)
        self.since_occupied = np.where(history[-1] > 0, 0, np.minimum(self.since_occupied + 1, CAP)).astype(np.float32)

    def features(self) -> np.ndarray:
        """``(2, rows, cols)``: log-scaled since_kept and since_occupied."""
        return np.log1p(np.stack([self.since_kept, self.since_occupied])) / _SCALE
