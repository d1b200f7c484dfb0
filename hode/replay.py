"""The simulator's lightweight twin of the camera loop: many frames through the same queues.

It sits beside :mod:`hode.pipeline` (it drives a scheduler and a backend, as the camera loop does),
above :mod:`hode.cluster` and :mod:`hode.schedule`.

:func:`replay` drives a :class:`SimBackend`'s core (same FIFO servers, noise, load trace, measured
node states) with a scheduler, frame after frame, keeping up to ``in_flight`` frames outstanding
exactly as :class:`hode.pipeline.Pipeline` does. It skips what makes the camera loop cost about a
millisecond per frame: work-item and crop objects, per-item completions and the NMS merge. The
same tiles are sent every frame (no filter), and a frame's detections are only *counted* (the
cached boxes of its tiles, before merging); the scheduler's work items carry no pixels and a
last-seen count of 0. For the same frames, scheduler and seed its per-frame
submit and finish times equal the full pipeline's (tests/test_sim_detections.py checks it); use it where
timing at scale matters (benchmarks, training a scheduler), the pipeline where boxes matter.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from hode.cluster.sim import SimBackend
from hode.errors import DataError, check
from hode.schedule.base import Scheduler
from hode.types import Feedback, WorkItem

Window = tuple[int, int, int, int]


@dataclass
class ReplayRun:
    frame_ids: np.ndarray
    submitted: np.ndarray  # virtual seconds
    finished: np.ndarray
    detections: np.ndarray  # cached boxes of the frame's tiles, before merging (-1: not counted)
    started: float
    ended: float

    @property
    def fps(self) -> float:
        return len(self.frame_ids) / max(self.ended - self.started, 1e-12)

    @property
    def latency_s(self) -> np.ndarray:
        return self.finished - self.submitted


def replay(sim: SimBackend, scheduler: Scheduler, frames: Sequence[int], windows: Sequence[Window],
           in_flight: int = 1, count_detections: bool = True) -> ReplayRun:
    """Send ``windows`` of every frame in ``frames`` (ids may repeat) through ``sim``'s nodes."""
    frames, windows = list(frames), [tuple(int(x) for x in w) for w in windows]
    check(len(frames) > 0, "replay needs at least one frame")
    check(isinstance(in_flight, int) and in_flight >= 1, f"in_flight must be an integer >= 1, got {in_flight!r}")
    check(not sim.tracking, "the replay path does not model failures or hedging: use the pipeline "
                            "(runner=sim through run.py) with runner.failure_trace / runner.failover.hedge")
    core = sim.core
    nn = len(core.nodes)
    items = [WorkItem(-1, k, w, None, "tile") for k, w in enumerate(windows)]
    item_ids = list(range(len(items)))
    pixels = [it.pixels for it in items]
    entries = [sim.cache.store(nd.model).entries for nd in core.nodes] if count_detections else None
    counts: dict[tuple, int] = {}  # (frame id, assignment) -> boxes: looked up once when frames repeat
    learns = scheduler.learns  # static schedulers skip feedback entirely
    n = len(frames)
    sub, fin, dets = np.zeros(n), np.zeros(n), np.full(n, -1, np.int64)
    pending: list[tuple[float, int, int]] = []  # (finish, frame id, position) of frames in flight
    info: dict[int, tuple] = {}  # position -> (before, assignment), for feedback
    t = sim.clock
    started = t

    def finish_ready(next_frame: int) -> None:
        done = []
        while pending and pending[0][0] <= t:
            done.append(heapq.heappop(pending))
        if done and learns:
            after = core.states(next_frame)
            for f_fin, f_id, pos in sorted(done, key=lambda d: d[1]):
                before, assignment = info.pop(pos)
                scheduler.observe(Feedback(f_id, before, after, assignment, f_fin - sub[pos]))

    def frame_count(f: int, assignment: list[int]) -> int:
        try:
            return sum([len(entries[a][(f, windows[k])]) for k, a in enumerate(assignment)])
        except KeyError as e:
            raise DataError(f"replay: no cached detections for frame {f}, window {e.args[0][1]}: "
                            f"run the pipeline with runner=sim on these frames first") from None

    for pos, f in enumerate(frames):
        while len(pending) >= in_flight:  # wait for the earliest outstanding frame
            t = max(t, pending[0][0])
            core.pop_until(t, collect=False)
            finish_ready(f)
        before = core.states(f)
        for it in items:
            it.frame_id = f
        assignment = scheduler.assign_checked(items, before)
        check(not assignment or (min(assignment) >= 0 and max(assignment) < nn),
              f"scheduler {scheduler.name} assigned a node outside 0..{nn - 1}")
        factors = core.factors(f)
        last = core.enqueue(f, item_ids, assignment, pixels, t, factors)
        if entries is not None:
            key = (f, tuple(assignment))
            c = counts.get(key)
            dets[pos] = c if c is not None else counts.setdefault(key, frame_count(f, assignment))
        sub[pos], fin[pos] = t, last
        if learns:
            info[pos] = (before, assignment)
        heapq.heappush(pending, (last, f, pos))
        if last <= t:  # nothing to wait for: the pipeline finishes it at once
            finish_ready(f + 1)
    while pending:
        t = max(t, pending[0][0])
        core.pop_until(t, collect=False)
        finish_ready(frames[-1] + 1)
    sim.clock = t
    return ReplayRun(np.asarray(frames), sub, fin, dets, started, t)
