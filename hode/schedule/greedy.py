"""``scheduler=greedy``: earliest-estimated-finish-time list scheduling, most crowded item first.

A strong non-learned baseline the paper lacks: items in order of their last known pedestrian
count, each to the up node that would finish it first given its queue and measured speed,
``(q_i + assigned_i + 1) / v_i``. Every item costs one unit (tiles are all about the same size).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from hode.schedule.base import Scheduler, up_nodes
from hode.schedule.shares import known_speeds
from hode.types import NodeState, WorkItem


class Greedy(Scheduler):
    name = "greedy"

    def assign(self, work: Sequence[WorkItem], nodes: Sequence[NodeState]) -> list[int]:
        alive = up_nodes(nodes)
        load = np.array([float(nodes[i].queue) for i in alive])
        v = known_speeds(nodes)
        speed = np.array([max(v[i], 1e-6) for i in alive])
        out = [0] * len(work)
        for k in sorted(range(len(work)), key=lambda k: -work[k].count):
            j = int(np.argmin((load + 1) / speed))
            out[k] = alive[j]
            load[j] += 1
        return out
