"""``scheduler=fourk``: the paper's "Infer 4K Images" baseline.

No tiling and no filter: each frame goes whole to one node, and frames are spread over the nodes
in proportion to their compute power. With one frame per decision that is a weighted round-robin
over consecutive frames; the smooth variant (nginx's) interleaves them, so with K frames in
flight several nodes work at once instead of the strongest taking bursts.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from hode.errors import check
from hode.schedule.base import Scheduler, up_nodes
from hode.schedule.shares import known_speeds
from hode.tiling import Tiler
from hode.types import Detections, Frame, NodeState, WorkItem


class InferFourK(Scheduler):
    name = "fourk"
    uses_filter = False

    def __init__(self, power: dict[str, float] | None = None, name: str | None = None) -> None:
        """``power``: node name -> relative compute power; None uses each node's measured speed."""
        super().__init__(name)
        if power is not None:
            check(isinstance(power, dict) and all(float(v) > 0 for v in power.values()),
                  f"scheduler.power must map node names to positive numbers, got {power!r}")
        self.power = power
        self._current: dict[str, float] = {}  # smooth weighted round-robin state, by node name

    def work(self, frame: Frame, tiler: Tiler, keep: np.ndarray, counts: np.ndarray,
             last: Detections) -> list[WorkItem]:
        H, W = frame.shape
        return [WorkItem(frame.index, 0, (0, 0, W, H), frame.image, "frame", float(np.sum(counts)))]

    def _weight(self, node: NodeState, speed: float) -> float:
        if self.power is not None:
            check(node.name in self.power, f"scheduler.power has no entry for node '{node.name}'")
            return float(self.power[node.name])
        return max(float(speed), 1e-6)

    def assign(self, work: Sequence[WorkItem], nodes: Sequence[NodeState]) -> list[int]:
        alive = up_nodes(nodes)
        v = known_speeds(nodes)
        out = []
        for _ in work:
            w = {i: self._weight(nodes[i], v[i]) for i in alive}
            total = sum(w.values())
            for i in alive:
                self._current[nodes[i].name] = self._current.get(nodes[i].name, 0.0) + w[i]
            pick = max(alive, key=lambda i: (self._current[nodes[i].name], -i))
            self._current[nodes[pick].name] -= total
            out.append(pick)
        return out
