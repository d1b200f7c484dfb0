"""Ground-truth box sequences the filter trains and is evaluated on, and their count matrices.

A :class:`TrackSequence` keeps the boxes of every frame (not only counts): closed-loop evaluation
needs to know which pedestrians a kept tile's padded crop would see. Sources:

- any frame source of the harness (``dataset=...``): boxes from ``gt_frames()`` when the source
  has that fast path (the synthetic crowd and MOT tracks do: no image is rendered), else from
  ``Frame.gt``; the real TUD-Campus / TUD-Stadtmitte tracks come through ``dataset=mot``.

Splits never mix frames: synthetic data is split by scene (seed), a single video by contiguous
time blocks (:func:`split_blocks`), so a validation or test frame is never a training frame's
neighbour in time.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hode.errors import DataError, check
from hode.tiling import cell_counts


@dataclass
class TrackSequence:
    """Boxes ``(N_t, 4)`` of every frame of one video, frame size in pixels; ``ids`` the boxes'
    track ids where the source has them (error diagnosis tells walk-ins from crossings with them)."""

    name: str
    width: int
    height: int
    boxes: list[np.ndarray]
    ids: list[np.ndarray] | None = None
    # the frame source the boxes came from, when its pixels can be rendered again (the motion
    # guard's evaluation differences them); None for a part of a video and for track-only data
    source: object = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.boxes)

    def counts(self, tile: int) -> np.ndarray:
        """``(T, rows, cols)`` pedestrians per tile, each counted at its box centre."""
        return np.stack([cell_counts(b, self.height, self.width, tile) for b in self.boxes]).astype(np.float32)

    def part(self, start: int, stop: int, tag: str) -> "TrackSequence":
        return TrackSequence(f"{self.name}[{tag}]", self.width, self.height, self.boxes[start:stop],
                             None if self.ids is None else self.ids[start:stop])


def _frame_size(source) -> tuple[int, int] | None:
    """``(width, height)`` a source declares (synthetic: width/height; MOT: size), else None."""
    if getattr(source, "size", None) is not None:
        w, h = source.size
        return int(w), int(h)
    if getattr(source, "width", None) and getattr(source, "height", None):
        return int(source.width), int(source.height)
    return None


def from_source(source) -> TrackSequence:
    """All ground-truth boxes of a harness frame source (``build(cfg.dataset)``).

    Sources with a ``gt_frames()`` fast path (synthetic, MOT) give boxes without images; others
    are iterated frame by frame.
    """
    name = getattr(source, "name", type(source).__name__)
    size = _frame_size(source)
    gts = []
    if hasattr(source, "gt_frames") and size is not None:
        gts = list(source.gt_frames())
    else:
        for frame in source:
            if frame.gt is None:
                raise DataError(f"dataset {name} has no ground truth on frame {frame.index}: the flow filter needs tracks")
            size = (frame.shape[1], frame.shape[0])
            gts.append(frame.gt)
    if not gts or size is None:
        raise DataError(f"dataset {name} yielded no frames")
    ids = [np.asarray(gt.ids).copy() for gt in gts] if all(gt.ids is not None for gt in gts) else None
    renders = hasattr(source, "__iter__") and not getattr(source, "blank", False)  # blank: MOT tracks without images
    return TrackSequence(name, size[0], size[1], [gt.boxes.copy() for gt in gts], ids, source if renders else None)


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
