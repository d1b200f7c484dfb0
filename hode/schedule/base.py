"""The one interface for all schedulers, and the trivial round-robin one.

A scheduler does two things for each frame: ``work`` decides *what* is sent (kept tiles by default;
whole frames for Infer-4K, expanded boxes for Elf) and ``assign`` decides *where* each item goes.
``observe`` hands learning schedulers the outcome of an earlier decision.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

from hode.tiling import Tiler, crop
from hode.types import Detections, Feedback, Frame, NodeState, WorkItem


def tile_work(frame: Frame, tiler: Tiler, keep: np.ndarray, counts: np.ndarray) -> list[WorkItem]:
    """Work items for the kept tiles of a frame, each carrying its last known pedestrian count."""
    H, W = frame.shape
    items = []
    for t in tiler.tiles(H, W):
        if keep[t.row, t.col]:
            items.append(WorkItem(frame.index, len(items), t.window, crop(frame.image, t.window), "tile",
                                  float(counts[t.row, t.col]), t))
    return items


class Scheduler(ABC):
    """Base of every ``scheduler=...`` option."""

    name = "base"
    uses_filter = True  # False for schedulers that send whole frames (the filter is bypassed)

    def __init__(self, name: str | None = None) -> None:
        if name:  # the config option's name (results and run names use it)
            self.name = name

    def work(self, frame: Frame, tiler: Tiler, keep: np.ndarray, counts: np.ndarray,
             last: Detections) -> list[WorkItem]:
        """What to detect in this frame; ``last`` is the previous frame's merged detections."""
        return tile_work(frame, tiler, keep, counts)

    @abstractmethod
    def assign(self, work: Sequence[WorkItem], nodes: Sequence[NodeState]) -> list[int]:
        """Index of the node for each work item (only nodes with ``up`` may be chosen)."""

    def observe(self, feedback: Feedback) -> None:
        """Learn from the outcome of an earlier frame (no-op for static schedulers)."""

    @property
    def learns(self) -> bool:
        """True when ``observe`` does something: a loop may skip building feedback otherwise."""
        return type(self).observe is not Scheduler.observe

    def assign_checked(self, work: Sequence[WorkItem], nodes: Sequence[NodeState]) -> list[int]:
        """``assign``, refused in one line when it answers for another number of items (the camera
        loop and the replay path both decide through here)."""
        from hode.errors import HodeError, check

        assignment = list(self.assign(work, nodes)) if work else []
        check(len(assignment) == len(work), f"scheduler {self.name} assigned {len(assignment)} of {len(work)} items",
              HodeError)
        return assignment


def up_nodes(nodes: Sequence[NodeState]) -> list[int]:
    alive = [i for i, n in enumerate(nodes) if n.up]
    if not alive:
        from hode.errors import HodeError

        raise HodeError("no edge node is up: cannot schedule work")
    return alive


class RoundRobin(Scheduler):
    """``scheduler=roundrobin``: items dealt to the up nodes in turn (a sanity baseline)."""

    name = "roundrobin"

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self._next = 0

    def assign(self, work: Sequence[WorkItem], nodes: Sequence[NodeState]) -> list[int]:
        alive = up_nodes(nodes)
        out = [alive[(self._next + k) % len(alive)] for k in range(len(work))]
        self._next = (self._next + len(work)) % len(alive)
        return out
