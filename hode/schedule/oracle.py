"""``scheduler=oracle``: HODE's two phases with information the camera does not have.

Counts per node minimise the latest estimated finish time using each node's *true* current speed
(``NodeState.true_speed``, set only by the simulator; the measured speed where it is not set) and
its queue; dispatch is accuracy-aware on the *true* pedestrian counts of this frame (from the
frame's ground truth, when it has one). It is the yardstick: every other scheduler's throughput is
reported as a fraction of this one's. It keeps the filter's tiles; pair it with ``filter=oracle``
for true occupancy too.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from hode.schedule.base import Scheduler, tile_work
from hode.schedule.dispatch import accuracy_aware
from hode.schedule.shares import earliest_finish_counts
from hode.tiling import Tiler
from hode.types import Detections, Frame, NodeState, WorkItem


class Oracle(Scheduler):
    name = "oracle"

    def work(self, frame: Frame, tiler: Tiler, keep: np.ndarray, counts: np.ndarray,
             last: Detections) -> list[WorkItem]:
        if frame.gt is not None:
            H, W = frame.shape
            counts = tiler.counts(frame.gt, H, W)
        return tile_work(frame, tiler, keep, counts)

    def assign(self, work: Sequence[WorkItem], nodes: Sequence[NodeState]) -> list[int]:
        speed = [n.true_speed if n.true_speed is not None else n.speed for n in nodes]
        counts = earliest_finish_counts(len(work), [n.queue for n in nodes], speed, [n.up for n in nodes])
        return accuracy_aware(work, counts, nodes)
