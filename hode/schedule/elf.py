"""``scheduler=elf``: the paper's Elf-based baseline (after Elf, MobiCom 2021).

Where to look: the previous frame's merged boxes, each expanded by 30% (width and height, about
its centre) as the estimate of where those people are now; overlapping regions are merged until
no two overlap, and each region is cropped as one item. Where to send: crops are dealt out in
proportion to the nodes' real-time (measured) speed, by pixels, largest crop first. Without a
previous result (first frame, or nobody seen) every tile is sent instead.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from hode.errors import check
from hode.schedule.base import Scheduler, tile_work, up_nodes
from hode.schedule.shares import known_speeds
from hode.tiling import Tiler, crop
from hode.types import Detections, Frame, NodeState, WorkItem


def expand_boxes(boxes: np.ndarray, ratio: float, width: int, height: int) -> np.ndarray:
    """Boxes grown by ``ratio`` of their size about the centre, clipped to the frame."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    c = (b[:, :2] + b[:, 2:]) / 2
    half = (b[:, 2:] - b[:, :2]) * (1 + ratio) / 2
    out = np.concatenate([c - half, c + half], axis=1)
    return np.clip(out, 0, [width, height, width, height])


def merge_regions(boxes: np.ndarray) -> np.ndarray:
    """Union boxes of overlapping groups, repeated until no two regions overlap (x1, y1, x2, y2)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    while len(b) > 1:
        overlap = ((b[:, None, 0] < b[None, :, 2]) & (b[None, :, 0] < b[:, None, 2]) &
                   (b[:, None, 1] < b[None, :, 3]) & (b[None, :, 1] < b[:, None, 3]))
        n, label = connected_components(csr_matrix(overlap), directed=False)
        if n == len(b):
            break
        merged = np.empty((n, 4))
        for k in range(n):
            g = b[label == k]
            merged[k] = (g[:, 0].min(), g[:, 1].min(), g[:, 2].max(), g[:, 3].max())
        b = merged  # a union can newly overlap another region: go round again
    return b


class ElfBased(Scheduler):
    name = "elf"
    uses_filter = False  # Elf predicts locations itself

    def __init__(self, expand: float = 0.3, min_side: int = 32, name: str | None = None) -> None:
        super().__init__(name)
        check(expand >= 0, f"scheduler.expand must be >= 0, got {expand!r}")
        check(isinstance(min_side, int) and min_side >= 1, f"scheduler.min_side must be a positive integer, got {min_side!r}")
        self.expand, self.min_side = expand, min_side

    def work(self, frame: Frame, tiler: Tiler, keep: np.ndarray, counts: np.ndarray,
             last: Detections) -> list[WorkItem]:
        H, W = frame.shape
        if not len(last):
            return tile_work(frame, tiler, np.ones(tiler.grid(H, W), bool), counts)
        regions = merge_regions(expand_boxes(last.boxes, self.expand, W, H))
        centers = last.centers()
        items = []
        for r in regions:
            x0, y0 = int(np.floor(r[0])), int(np.floor(r[1]))
            x1, y1 = int(np.ceil(r[2])), int(np.ceil(r[3]))
            # Tiny regions are grown to a size a detector can take (stride 32).
            if x1 - x0 < self.min_side:
                x0 = max(0, min(x0, W - self.min_side)); x1 = min(W, x0 + self.min_side)  # noqa: E702
            if y1 - y0 < self.min_side:
                y0 = max(0, min(y0, H - self.min_side)); y1 = min(H, y0 + self.min_side)  # noqa: E702
            inside = ((centers[:, 0] >= x0) & (centers[:, 0] < x1) & (centers[:, 1] >= y0) & (centers[:, 1] < y1))
            window = (x0, y0, x1, y1)
            items.append(WorkItem(frame.index, len(items), window, crop(frame.image, window), "crop",
                                  float(inside.sum())))
        return items

    def assign(self, work: Sequence[WorkItem], nodes: Sequence[NodeState]) -> list[int]:
        alive = up_nodes(nodes)
        v = known_speeds(nodes)
        speed = np.array([max(v[i], 1e-6) for i in alive])
        target = speed / speed.sum() * sum(w.pixels for w in work)
        given = np.zeros(len(alive))
        out = [0] * len(work)
        for k in sorted(range(len(work)), key=lambda k: -work[k].pixels):
            j = int(np.argmax(target - given))  # the node furthest below its share of pixels
            out[k] = alive[j]
            given[j] += work[k].pixels
        return out
