"""Grid tiling with padding, zero-copy crops, and merging of per-tile detections.

The frame is cut into a grid of ``tile x tile`` cells (the last row/column is smaller when the
frame is not a multiple of the tile). Each cell is cropped with ``pad = (ph, pw)`` extra pixels on
every side, clipped to the frame, so a pedestrian up to ``ph`` tall or ``pw`` wide cut by a split
line appears whole in the neighbouring crop (paper, Fig. 5). Merging shifts boxes back to the frame,
drops boxes cut by an interior crop border whose owner is a neighbour, and removes the remaining
duplicates with torchvision's NMS.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torchvision.ops import nms

from hode.errors import check
from hode.types import Detections, Tile


def grid_shape(height: int, width: int, tile: int) -> tuple[int, int]:
    """Rows and columns of the tile grid covering a ``height x width`` frame."""
    return math.ceil(height / tile), math.ceil(width / tile)


@lru_cache(maxsize=64)
def make_tiles(height: int, width: int, tile: int, pad_h: int, pad_w: int) -> tuple[Tile, ...]:
    """All tiles of the grid in row-major order (cached: frames of one video share a grid)."""
    rows, cols = grid_shape(height, width, tile)
    tiles = []
    for r in range(rows):
        for c in range(cols):
            x0, y0 = c * tile, r * tile
            x1, y1 = min(x0 + tile, width), min(y0 + tile, height)
            window = (max(0, x0 - pad_w), max(0, y0 - pad_h), min(width, x1 + pad_w), min(height, y1 + pad_h))
            tiles.append(Tile(r, c, (x0, y0, x1, y1), window))
    return tuple(tiles)


def crop(image: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """The window of the image as a view (no pixel is copied)."""
    x0, y0, x1, y1 = window
    return image[y0:y1, x0:x1]


def cell_counts(boxes: np.ndarray, height: int, width: int, tile: int) -> np.ndarray:
    """Pedestrians per grid cell, counting each box once at its centre: the filter's input."""
    rows, cols = grid_shape(height, width, tile)
    counts = np.zeros((rows, cols), np.float32)
    if len(boxes):
        cx = np.clip((boxes[:, 0] + boxes[:, 2]) / 2, 0, width - 1)
        cy = np.clip((boxes[:, 1] + boxes[:, 3]) / 2, 0, height - 1)
        np.add.at(counts, ((cy // tile).astype(int), (cx // tile).astype(int)), 1)
    return counts


def _owned_or_whole(det: Detections, window, core, height: int, width: int, edge_px: float) -> np.ndarray:
    """Mask of boxes to keep from one crop (frame coordinates).

    A box touching an interior border of its crop was cut by that border; if its centre lies
    outside this crop's cell, the neighbouring crop holds it whole, so it is dropped here.
    """
    x0, y0, x1, y1 = window
    b = det.boxes
    cut = np.zeros(len(b), bool)
    if x0 > 0:
        cut |= b[:, 0] <= x0 + edge_px
    if y0 > 0:
        cut |= b[:, 1] <= y0 + edge_px
    if x1 < width:
        cut |= b[:, 2] >= x1 - edge_px
    if y1 < height:
        cut |= b[:, 3] >= y1 - edge_px
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    inside = (cx >= core[0]) & (cx < core[2]) & (cy >= core[1]) & (cy < core[3])
    return ~cut | inside


def merge(parts: list[tuple[Detections, tuple[int, int, int, int], tuple[int, int, int, int] | None]],
          height: int, width: int, iou: float = 0.5, edge_px: float = 2.0) -> Detections:
    """Merge per-crop detections into one set in frame coordinates.

    ``parts`` holds ``(detections in crop coordinates, crop window, core cell or None)``; a part
    with no core cell (a whole frame, or a free-form crop) keeps all its boxes before NMS.
    """
    kept = []
    for det, window, core in parts:
        if not len(det):
            continue
        d = det.shifted(window[0], window[1])
        if core is not None:
            d = d.select(_owned_or_whole(d, window, core, height, width, edge_px))
        kept.append(d)
    if not kept:
        return Detections()
    allp = Detections.concat(kept)
    if len(kept) == 1:
        return allp
    keep = nms(torch.from_numpy(allp.boxes), torch.from_numpy(allp.scores), iou).numpy()
    return allp.select(np.sort(keep))


@dataclass(frozen=True)
class Tiler:
    """``tiling=...`` config object: tile size and padding ``(pad_h, pad_w)`` in pixels."""

    tile: int = 512
    pad: tuple[int, int] = (96, 48)
    merge_iou: float = 0.5

    def __post_init__(self) -> None:
        check(isinstance(self.tile, int) and self.tile > 0, f"tiling.tile must be a positive integer, got {self.tile!r}")
        pad = tuple(self.pad) if not isinstance(self.pad, int) else (self.pad, self.pad)
        check(len(pad) == 2 and all(isinstance(p, int) and p >= 0 for p in pad),
              f"tiling.pad must be two non-negative integers [pad_h, pad_w], got {self.pad!r}")
        check(max(pad) < self.tile, f"tiling.pad {list(pad)} must be smaller than tiling.tile {self.tile}")
        check(0.0 < self.merge_iou <= 1.0, f"tiling.merge_iou must be in (0, 1], got {self.merge_iou!r}")
        object.__setattr__(self, "pad", pad)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        return grid_shape(height, width, self.tile)

    def tiles(self, height: int, width: int) -> tuple[Tile, ...]:
        return make_tiles(height, width, self.tile, self.pad[0], self.pad[1])

    def counts(self, det: Detections, height: int, width: int) -> np.ndarray:
        return cell_counts(det.boxes, height, width, self.tile)
