"""``scheduler=salbs``: speed-aware load balancing, the paper's baseline of Fig. 13.

Each up node gets a number of tiles in proportion to its measured speed (largest-remainder
rounding); queues are ignored. Items are dealt in order unless ``dispatch`` says otherwise.
"""
from __future__ import annotations

from typing import Sequence

from hode.schedule.base import Scheduler, up_nodes
from hode.schedule.dispatch import get_dispatch
from hode.schedule.shares import known_speeds, largest_remainder
from hode.types import NodeState, WorkItem


class SpeedAware(Scheduler):
    name = "salbs"

    def __init__(self, dispatch: str = "in_order", name: str | None = None) -> None:
        super().__init__(name)
        self.dispatch = get_dispatch(dispatch)

    def assign(self, work: Sequence[WorkItem], nodes: Sequence[NodeState]) -> list[int]:
        alive = set(up_nodes(nodes))
        v = known_speeds(nodes)
        speed = [max(v[i], 1e-6) if i in alive else 0.0 for i in range(len(nodes))]
        return self.dispatch(work, largest_remainder(speed, len(work)), nodes)
