"""The worker's device: queued tiles run one at a time, in arrival order, on the RPC's own thread.

A Detect handler joins a FIFO line of *turns* (one turn per request, its tiles together and in
order); when its turn comes it runs its tiles itself: the real detector (real detections), then
the wait to the tile's paced service time (see :mod:`hode.edge.pacing`). The turn then passes to
the next request in line by setting that request's own event: one thread wake-up per hand-over,
none when the device was idle. (An earlier design queued tiles to a device thread and waited on a
per-tile event: two thread hand-offs per tile, a measurable part of the per-tile RPC overhead.)

The loop keeps the figures the Status RPC reports: queue length (tiles waiting or running), speed
(tiles/s, moving average of 1 / service time), processed, busy time and overruns.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from hode.edge.pacing import Pacer
from hode.errors import DataError
from hode.profiles import TILE_PIXELS
from hode.types import Detections

log = logging.getLogger(__name__)


@dataclass(eq=False)  # identity, not field equality: a numpy image has no truth value to compare
class TileJob:
    frame_id: int
    item_id: int
    image: np.ndarray
    time_scale: float = 0.0  # 0: the pacer's own
    cancelled: bool = False  # the RPC went away: skip the tile if it has not started
    detections: Detections | None = None
    error: str | None = None
    started: float = 0.0
    finished: float = 0.0
    compute_s: float = 0.0
    overrun: bool = False
    decode_s: float = 0.0  # the worker's decode of the payload (before the tile's service)
    in_batch: bool = False  # not the first tile of its request (batched inference pacing)
    # The image still being decoded (a Future of (image, decode_s)) while earlier tiles run: it is
    # waited for just before the tile's service starts, so the wait is not service time.
    pending: Future | None = None
    bad_payload: bool = False  # the pending decode failed: the request is INVALID_ARGUMENT

    def resolve(self) -> None:
        """Take the decoded image from ``pending`` (raises what the decode raised)."""
        if self.pending is not None:
            self.image, self.decode_s = self.pending.result()
            self.pending = None

    @property
    def service_s(self) -> float:
        return self.finished - self.started


@dataclass(eq=False)  # the line finds a turn by identity (see _leave)
class _Turn:
    jobs: list[TileJob]
    go: threading.Event = field(default_factory=threading.Event)


class DeviceLoop:
    # How often a request waiting for its turn (or a tile waiting out its paced time) checks that
    # its caller is still there and the worker is not stopping.
    POLL_S = 0.05

    def __init__(self, detector, pacer: Pacer, speed_alpha: float = 0.2) -> None:
        self.detector, self.pacer, self.alpha = detector, pacer, speed_alpha
        self._lock = threading.Lock()
        self._line: collections.deque[_Turn] = collections.deque()  # head: the turn on the device
        self._pending = 0  # tiles waiting or running
        self._stop = threading.Event()
        self.speed = 0.0  # tiles/s; seeded by calibrate()
        self.processed = 0
        self.busy_s = 0.0
        self.overruns = 0
        self.compute_tile_ms = 0.0
        self.last_scale = pacer.time_scale

    # ----- set-up ------------------------------------------------------------------------------

    def calibrate(self, repeats: int = 2) -> float:
        """Warm the detector up and measure one full tile's real inference (ms, median)."""
        image = np.random.default_rng(0).integers(0, 255, (608, 704, 3), dtype=np.uint8)
        self.detector.predict([image])  # first call: lazy load, allocator warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            self.detector.predict([image])
            times.append(time.perf_counter() - t0)
        self.compute_tile_ms = float(np.median(times) * 1000)
        expected = self.pacer.target_s(TILE_PIXELS, -1, self.compute_tile_ms / 1000) if not self.pacer.emulated \
            else self.pacer.profile_tile_s() * self.pacer.time_scale
        self.speed = 1.0 / max(expected, self.compute_tile_ms / 1000, 1e-6)
        return self.compute_tile_ms

    def stop(self) -> None:
        """Requests waiting for their turn give up; a tile waiting out its paced time ends now."""
        self._stop.set()

    # ----- work --------------------------------------------------------------------------------

    @property
    def queue_len(self) -> int:
        return self._pending

    def run(self, jobs: list[TileJob], active: Callable[[], bool] = lambda: True) -> bool:
        """Run one request's tiles, in order, after every request that arrived before it.

        Blocks the calling (RPC) thread. Returns False when the caller went away (``active()``
        false) or the worker stopped before the request's turn came; unstarted tiles are then
        skipped. Once started, a tile whose ``cancelled`` flag is set ends its paced wait early.
        """
        turn = _Turn(jobs)
        with self._lock:
            self._line.append(turn)
            self._pending += len(jobs)
            if len(self._line) == 1:  # the device is idle: no wait, no wake-up
                turn.go.set()
        ran = 0
        # Whatever happens from here on (a caller that leaves, a stop, an exception anywhere, even
        # in ``active``), the turn leaves the line and the next one gets the device: a turn left
        # behind would hold every later request forever while health still says SERVING.
        try:
            if not turn.go.is_set() and not self._wait_turn(turn, active):
                return False
            if self.pacer.batched and len(jobs) > 1:  # batched inference: one detector call
                ran = self._run_batch(jobs)
                return True
            for k, job in enumerate(jobs):
                if job.cancelled or self._stop.is_set():
                    break
                job.in_batch = k > 0
                self._run_one(job)
                ran += 1
                with self._lock:
                    self._pending -= 1
                if job.bad_payload:  # the rest of a bad request is not run
                    break
        finally:
            self._leave(turn, len(jobs) - ran)
        return True

    def _wait_turn(self, turn: _Turn, active: Callable[[], bool]) -> bool:
        """Wait until ``turn`` heads the line; False when the caller left or the worker stops first."""
        while not turn.go.wait(self.POLL_S):
            if self._stop.is_set() or not active():
                return False  # run() leaves the line, handing the turn on if it came meanwhile
        return True

    def _leave(self, turn: _Turn, unfinished: int) -> None:
        """Take ``turn`` out of the line (by identity) and, if it held the device, hand it on."""
        with self._lock:
            self._pending -= unfinished
            if self._line and self._line[0] is turn:
                self._line.popleft()
                if self._line:
                    self._line[0].go.set()
                return
            for k, other in enumerate(self._line):
                if other is turn:
                    del self._line[k]
                    return

    def _run_batch(self, jobs: list[TileJob]) -> int:
        """Batched inference: the request's tiles (decoded first) go through the detector in one
        call, then each is paced in order to its own target on a running clock, so the request
        takes the sum of its tiles' paced times (or the real batch time, if longer). Returns how
        many tiles ran."""
        todo = []
        for job in jobs:
            if job.cancelled or self._stop.is_set():
                break
            try:
                job.resolve()
            except DataError as e:  # this tile and the rest of the bad request are not run
                job.error, job.bad_payload = str(e), True
                break
            except CancelledError:
                job.cancelled = True
                break
            todo.append(job)
        if not todo:
            return 0
        t0 = time.perf_counter()
        try:
            dets = self.detector.predict([j.image for j in todo])
        except Exception as e:  # a detector failure fails the request, not the worker
            log.exception("batch of %d tiles of frame %s failed", len(todo), todo[0].frame_id)
            for j in todo:
                j.error = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                j.started = j.finished = time.perf_counter()
            with self._lock:
                self._pending -= len(todo)
            return len(todo)
        share = (time.perf_counter() - t0) / len(todo)  # each tile's part of the batch's compute
        deadline = started = t0
        for k, (job, det) in enumerate(zip(todo, dets)):
            job.in_batch, job.detections, job.compute_s, job.started = k > 0, det, share, started
            deadline += self._pace(job, deadline)
            started = job.finished
            with self._lock:
                self._pending -= 1
        return len(todo)

    def _pace(self, job: TileJob, since: float) -> float:
        """Wait until ``since`` + the tile's paced time (or the caller leaves, or the worker stops),
        set ``finished`` and the loop's figures; return the paced time."""
        h, w = job.image.shape[:2]
        target = self.pacer.target_s(h * w, job.frame_id, job.compute_s, job.time_scale, job.in_batch)
        if job.time_scale > 0:
            self.last_scale = job.time_scale
        job.overrun = self.pacer.emulated and job.compute_s > target
        deadline = since + target
        # The caller going away (deadline, cancel) ends the wait: a stale tile must not hold the device.
        while (left := deadline - time.perf_counter()) > 0 and not self._stop.is_set() and not job.cancelled:
            self._stop.wait(min(left, self.POLL_S))
        job.finished = time.perf_counter()
        service = job.service_s
        self.processed += 1
        self.busy_s += service
        self.overruns += int(job.overrun)
        if job.finished >= deadline:  # one cut short by a cancel says nothing about this device's speed
            rate = 1.0 / max(service, 1e-6)
            self.speed = rate if self.speed <= 0 else (1 - self.alpha) * self.speed + self.alpha * rate
        return target

    def _run_one(self, job: TileJob) -> None:
        try:
            job.resolve()
        except DataError as e:  # the payload was damaged past its header
            job.error, job.bad_payload = str(e), True
            return
        except CancelledError:  # the RPC ended while the tile waited for its decode
            job.cancelled = True
            return
        try:
            self._process(job)
        except Exception as e:  # a detector failure fails this tile's RPC, not the worker
            log.exception("tile %s of frame %s failed", job.item_id, job.frame_id)
            job.error = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            job.finished = time.perf_counter()

    def _process(self, job: TileJob) -> None:
        job.started = time.perf_counter()
        job.detections = self.detector.predict([job.image])[0]
        job.compute_s = time.perf_counter() - job.started
        self._pace(job, job.started)
