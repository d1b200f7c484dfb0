"""The seam between the camera pipeline and wherever tiles run (in-process, gRPC workers, simulator)."""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from hode.types import Completion, NodeState, WorkItem


@runtime_checkable
class Backend(Protocol):
    """Edge nodes as the camera sees them.

    Times in :class:`Completion` and from :meth:`now` are seconds on the backend's own clock:
    the wall clock for real nodes, a virtual clock in simulation. ``poll`` returns finished items
    (possibly none); it waits at most ``timeout`` seconds (backend clock) for at least one.
    """

    def start(self) -> None: ...
    def states(self) -> list[NodeState]: ...
    def submit(self, frame_id: int, items: Sequence[WorkItem], assignment: Sequence[int]) -> None: ...
    def poll(self, timeout: float | None = None) -> list[Completion]: ...
    def now(self) -> float: ...
    def stats(self) -> list[dict]: ...
    def close(self) -> None: ...
