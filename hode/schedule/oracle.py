"""``scheduler=oracle``: HODE's two phases with information the camera does not have.

Counts per node minimise the latest estimated finish time using each node's *true* current speed
(``NodeState.true_speed``, set only by the simulator; the measured speed where it is not set) and
its queue; dispatch is accuracy-aware on the *true* pedestrian counts of this frame (from the
frame's ground truth, when it has one). It is the yardstick: every other scheduler's throughput is
reported as a fraction of this one's. It keeps the filter's tiles; pair it with ``filter=oracle``
for true occupancy too.

``step`` (``scheduler=oracle_grid``): the counts are chosen among the DQN's actions instead, the share
grid at that step rounded by largest remainder, still with true speeds: the best any policy on the
paper's action space can do, so the gap between it and ``oracle`` is what the grid costs and the gap
between ``dqn`` and it is what the learning leaves.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from hode.schedule.base import Scheduler, tile_work
from hode.schedule.dispatch import accuracy_aware
from hode.schedule.shares import best_on_grid, earliest_finish_counts, simplex_actions, simplex_size
from hode.tiling import Tiler
from hode.types import Detections, Frame, NodeState, WorkItem


class Oracle(Scheduler):
    name = "oracle"

    def __init__(self, step: float | None = None, name: str | None = None) -> None:
        super().__init__(name)
        if step is not None:
            simplex_size(1, step)  # a step that does not divide 1 fails here, not at the first frame
        self.step = step
        self._actions: np.ndarray | None = None

    def work(self, frame: Frame, tiler: Tiler, keep: np.ndarray, counts: np.ndarray,
             last: Detections) -> list[WorkItem]:
        if frame.gt is not None:
            H, W = frame.shape
            counts = tiler.counts(frame.gt, H, W)
        return tile_work(frame, tiler, keep, counts)

    def assign(self, work: Sequence[WorkItem], nodes: Sequence[NodeState]) -> list[int]:
        speed = [n.true_speed if n.true_speed is not None else n.speed for n in nodes]
        queue, up = [n.queue for n in nodes], [n.up for n in nodes]
        if self.step is None:
            counts = earliest_finish_counts(len(work), queue, speed, up)
        else:
            if self._actions is None or self._actions.shape[1] != len(nodes):
                self._actions = simplex_actions(len(nodes), self.step)
            counts = best_on_grid(self._actions, len(work), queue, speed, up)
        return accuracy_aware(work, counts, nodes)
