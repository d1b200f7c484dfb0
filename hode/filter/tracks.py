"""Ground-truth box sequences the filter trains and is evaluated on, and their count matrices.

A :class:`TrackSequence` keeps the boxes of every frame (not only counts): closed-loop evaluation
needs to know which pedestrians a kept tile's padded crop would see. Sources:

- any frame source of the harness (``dataset=...``): boxes from ``ground_truth()`` when the source
  has that fast path (the synthetic crowd does: no image is rendered), else from ``Frame.gt``;
- the real TUD-Campus / TUD-Stadtmitte tracks bundled with ``motmetrics`` (see :mod:`hode.filter.mot_tracks`).

Splits never mix frames: synthetic data is split by scene (seed), a single video by contiguous
time blocks (:func:`split_blocks`), so a validation or test frame is never a training frame's
neighbour in time.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hode.errors import DataError, check
from hode.tiling import cell_counts


@dataclass
class TrackSequence:
    """Boxes ``(N_t, 4)`` of every frame of one video, frame size in pixels."""

    name: str
    width: int
    height: int
    boxes: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.boxes)

    def counts(self, tile: int) -> np.ndarray:
        """``(T, rows, cols)`` pedestrians per tile, each counted at its box centre."""
        return np.stack([cell_counts(b, self.height, self.width, tile) for b in self.boxes]).astype(np.float32)

    def part(self, start: int, stop: int, tag: str) -> "TrackSequence":
        return TrackSequence(f"{self.name}[{tag}]", self.width, self.height, self.boxes[start:stop])


def from_source(source) -> TrackSequence:
    """All ground-truth boxes of a harness frame source (``build(cfg.dataset)``)."""
    name = getattr(source, "name", type(source).__name__)
    boxes: list[np.ndarray] = []
    if hasattr(source, "ground_truth") and hasattr(source, "width") and hasattr(source, "height"):
        for _, gt in source.ground_truth():
            boxes.append(gt.boxes.copy())
        return TrackSequence(name, int(source.width), int(source.height), boxes)
    size = None
    for frame in source:
        if frame.gt is None:
            raise DataError(f"dataset {name} has no ground truth on frame {frame.index}: the flow filter needs tracks")
        size = frame.shape
        boxes.append(frame.gt.boxes.copy())
    if size is None:
        raise DataError(f"dataset {name} yielded no frames")
    return TrackSequence(name, size[1], size[0], boxes)


def split_blocks(seq: TrackSequence, ratios=(3, 1, 1)) -> list[TrackSequence]:
    """Contiguous time blocks in the given ratios (default train:val:test = 3:1:1)."""
    check(len(ratios) >= 1 and all(r > 0 for r in ratios), f"split ratios must be positive, got {ratios!r}")
    edges = np.round(np.cumsum([0, *ratios]) / sum(ratios) * len(seq)).astype(int)
    return [seq.part(int(a), int(b), f"{a}:{b}") for a, b in zip(edges[:-1], edges[1:])]


def windows(counts: np.ndarray, trend: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (history of ``trend`` frames, next frame's occupancy) pair of one count sequence."""
    T = len(counts)
    if T <= trend:
        return (np.zeros((0, trend, *counts.shape[1:]), np.float32), np.zeros((0, *counts.shape[1:]), np.float32))
    idx = np.arange(trend)[None, :] + np.arange(T - trend)[:, None]
    return counts[idx], (counts[trend:] > 0).astype(np.float32)
