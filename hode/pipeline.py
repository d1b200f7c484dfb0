"""The camera loop, written once against the Backend seam.

For every frame: predict which tiles hold pedestrians (the filter, fed by the pipeline's *own*
merged detections of earlier frames: closed loop), let the scheduler decide what is sent where,
submit it, and merge what comes back. Up to ``in_flight`` frames are outstanding at once, so
throughput (frames per second of the backend's clock) and per-frame latency both come out.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
from tqdm import tqdm

from hode.cluster.base import Backend
from hode.errors import HodeError, check
from hode.filter.base import FlowFilter, observe, see
from hode.schedule.base import Scheduler
from hode.tiling import Tiler, merge
from hode.types import Completion, Detections, Feedback, Frame, NodeState, WorkItem


@dataclass
class FrameRecord:
    """Everything the run keeps about one finished frame."""

    index: int
    detections: Detections
    gt: Detections | None
    submitted: float
    finished: float
    tiles_total: int
    items: int
    keep: np.ndarray | None = None

    @property
    def latency_s(self) -> float:
        return self.finished - self.submitted


@dataclass
class _Pending:
    frame: Frame
    items: list[WorkItem]
    assignment: list[int]
    before: list[NodeState]
    submitted: float
    tiles_total: int
    keep: np.ndarray
    done: dict[int, Completion] = field(default_factory=dict)


@dataclass
class RunTrace:
    records: list[FrameRecord] = field(default_factory=list)
    overhead_s: dict[str, list[float]] = field(default_factory=lambda: {"tile": [], "filter": [], "schedule": [], "merge": []})
    started: float = 0.0
    ended: float = 0.0
    interrupted: bool = False


class Pipeline:
    def __init__(self, tiler: Tiler, flow_filter: FlowFilter, scheduler: Scheduler, backend: Backend,
                 history: int = 5, in_flight: int = 2, progress: bool = True,
                 on_frame: Callable[[FrameRecord], None] | None = None) -> None:
        check(isinstance(in_flight, int) and in_flight >= 1, f"runner.in_flight must be an integer >= 1, got {in_flight!r}")
        check(isinstance(history, int) and history >= 1, f"pipeline history must be >= 1 frames, got {history!r}")
        self.tiler, self.filter, self.scheduler, self.backend = tiler, flow_filter, scheduler, backend
        self.history_len, self.in_flight, self.progress, self.on_frame = history, in_flight, progress, on_frame

    def fit(self, size: tuple[int, int] | None) -> None:
        """Check the stages against the frame size (W, H) before anything is labelled or started: a
        filter bound to a tile grid adapts to this one (filter=st's transfer) or refuses in one line."""
        if size is None:
            return
        check_grid = getattr(self.filter, "check_grid", None)
        if check_grid is not None:
            check_grid(self.tiler.grid(size[1], size[0]))

    def run(self, frames: Iterable[Frame], total: int | None = None) -> RunTrace:
        trace = RunTrace()
        self._counts: dict[int, np.ndarray] = {}  # frame index -> merged detection counts per tile
        self._last = Detections()
        self._last_index = -1
        pending: dict[int, _Pending] = {}
        bar = tqdm(total=total, desc="frames", unit="fr", disable=not self.progress, leave=False)
        trace.started = self.backend.now()
        try:
            for frame in frames:
                pending[frame.index] = self._submit(frame, trace)
                self._finish_ready(pending, trace, bar)
                while len(pending) >= self.in_flight:
                    self._collect(pending, trace, bar)
            while pending:
                self._collect(pending, trace, bar)
        except KeyboardInterrupt:
            trace.interrupted = True  # keep the frames done so far; the caller writes them out
        finally:
            trace.ended = self.backend.now()
            bar.close()
        trace.records.sort(key=lambda r: r.index)
        return trace

    # ----- one frame out ------------------------------------------------------------------------

    def _history(self, grid: tuple[int, int]) -> np.ndarray:
        """Counts of the latest finished frames, oldest first, at most ``history`` of them."""
        keys = sorted(self._counts)[-self.history_len:]
        if not keys:
            return np.zeros((0, *grid), np.float32)
        return np.stack([self._counts[k] for k in keys])

    def _submit(self, frame: Frame, trace: RunTrace) -> _Pending:
        H, W = frame.shape
        grid = self.tiler.grid(H, W)
        t0 = time.perf_counter()
        history = self._history(grid)
        truth = self.tiler.counts(frame.gt, H, W) if frame.gt is not None else None
        if self.scheduler.uses_filter:
            see(self.filter, frame.image, self.tiler.tile)  # the pixels, for filters that also look at them
            keep = np.asarray(self.filter(history, truth), bool)
            if keep.shape != grid:
                raise HodeError(f"filter returned a {keep.shape} mask for a {grid} tile grid")
        else:
            keep = np.ones(grid, bool)
        t1 = time.perf_counter()
        last_counts = history[-1] if len(history) else np.zeros(grid, np.float32)
        items = self.scheduler.work(frame, self.tiler, keep, last_counts, self._last)
        t2 = time.perf_counter()
        before = self.backend.states()
        assignment = self.scheduler.assign_checked(items, before)
        t3 = time.perf_counter()
        submitted = self.backend.now()
        self.backend.submit(frame.index, items, assignment)
        trace.overhead_s["filter"].append(t1 - t0)
        trace.overhead_s["tile"].append(t2 - t1)
        trace.overhead_s["schedule"].append(t3 - t2)
        return _Pending(frame, items, assignment, before, submitted, grid[0] * grid[1], keep)

    # ----- results back -------------------------------------------------------------------------

    def _collect(self, pending: dict[int, _Pending], trace: RunTrace, bar) -> None:
        if not self._finish_ready(pending, trace, bar):
            for c in self.backend.poll(timeout=1.0):
                p = pending.get(c.frame_id)
                if p is not None and c.item_id not in p.done:  # late duplicates are dropped
                    p.done[c.item_id] = c
            self._finish_ready(pending, trace, bar)

    def _finish_ready(self, pending: dict[int, _Pending], trace: RunTrace, bar) -> bool:
        finished = [k for k, p in pending.items() if len(p.done) == len(p.items)]
        for k in sorted(finished):
            self._finish(pending.pop(k), trace)
            bar.update(1)
        return bool(finished)

    def _finish(self, p: _Pending, trace: RunTrace) -> None:
        H, W = p.frame.shape
        t0 = time.perf_counter()
        parts = [(p.done[it.item_id].detections, it.window, it.tile.core if it.tile else None) for it in p.items]
        dets = merge(parts, H, W, iou=self.tiler.merge_iou)
        trace.overhead_s["merge"].append(time.perf_counter() - t0)
        finished = max((c.finished for c in p.done.values()), default=p.submitted)
        finished = max(finished, p.submitted)
        if p.frame.index > self._last_index:
            self._last, self._last_index = dets, p.frame.index
        self._counts[p.frame.index] = self.tiler.counts(dets, H, W)
        if self.scheduler.uses_filter:
            newest = p.frame.index == self._last_index  # an older frame's boxes would be stale
            observe(self.filter, self._counts[p.frame.index], p.keep, dets.boxes if newest else None)
        for k in sorted(self._counts)[:-self.history_len]:
            del self._counts[k]
        rec = FrameRecord(p.frame.index, dets, p.frame.gt, p.submitted, finished, p.tiles_total, len(p.items), p.keep)
        trace.records.append(rec)
        self.scheduler.observe(Feedback(p.frame.index, p.before, self.backend.states(), p.assignment, rec.latency_s))
        if self.on_frame:
            self.on_frame(rec)
