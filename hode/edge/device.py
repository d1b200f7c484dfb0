"""The worker's device: one thread runs the queued tiles one at a time, in arrival order.

Each tile gets the real detector (real detections), then waits out the rest of its paced service
time (see :mod:`hode.edge.pacing`). The loop keeps the figures the Status RPC reports: queue
length, speed (tiles/s, moving average of 1 / service time), processed, busy time and overruns.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from hode.cluster.profiles import TILE_PIXELS
from hode.edge.pacing import Pacer
from hode.types import Detections

log = logging.getLogger(__name__)


@dataclass
class TileJob:
    frame_id: int
    item_id: int
    image: np.ndarray
    time_scale: float = 0.0  # 0: the pacer's own
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False  # the RPC went away: skip the tile if it has not started
    detections: Detections | None = None
    error: str | None = None
    started: float = 0.0
    finished: float = 0.0
    compute_s: float = 0.0
    overrun: bool = False

    @property
    def service_s(self) -> float:
        return self.finished - self.started


class DeviceLoop:
    def __init__(self, detector, pacer: Pacer, speed_alpha: float = 0.2) -> None:
        self.detector, self.pacer, self.alpha = detector, pacer, speed_alpha
        self._q: queue.Queue[TileJob | None] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running = 0
        self.speed = 0.0  # tiles/s; seeded by calibrate()
        self.processed = 0
        self.busy_s = 0.0
        self.overruns = 0
        self.compute_tile_ms = 0.0
        self.last_scale = pacer.time_scale
        self._thread = threading.Thread(target=self._run, name="device", daemon=True)

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

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._q.put(None)

    # ----- work --------------------------------------------------------------------------------

    @property
    def queue_len(self) -> int:
        return self._q.qsize() + self._running

    def put(self, jobs: list[TileJob]) -> None:
        with self._lock:  # one request's tiles stay together and in order
            for j in jobs:
                self._q.put(j)

    def _run(self) -> None:
        while not self._stop.is_set():
            job = self._q.get()
            if job is None:
                break
            if job.cancelled:
                job.done.set()
                continue
            self._running = 1
            try:
                self._process(job)
            except Exception as e:  # a detector failure fails this tile's RPC, not the worker
                log.exception("tile %s of frame %s failed", job.item_id, job.frame_id)
                job.error = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                job.finished = time.perf_counter()
            finally:
                self._running = 0
                job.done.set()

    def _process(self, job: TileJob) -> None:
        job.started = time.perf_counter()
        job.detections = self.detector.predict([job.image])[0]
        job.compute_s = time.perf_counter() - job.started
        h, w = job.image.shape[:2]
        target = self.pacer.target_s(h * w, job.frame_id, job.compute_s, job.time_scale)
        if job.time_scale > 0:
            self.last_scale = job.time_scale
        job.overrun = self.pacer.emulated and job.compute_s > target
        deadline = job.started + target
        # The caller going away (deadline, cancel) ends the wait: a stale tile must not hold the device.
        while (left := deadline - time.perf_counter()) > 0 and not self._stop.is_set() and not job.cancelled:
            self._stop.wait(min(left, 0.05))
        job.finished = time.perf_counter()
        service = job.service_s
        self.processed += 1
        self.busy_s += service
        self.overruns += int(job.overrun)
        if job.finished < deadline:  # cut short by a cancel: says nothing about this device's speed
            return
        rate = 1.0 / max(service, 1e-6)
        self.speed = rate if self.speed <= 0 else (1 - self.alpha) * self.speed + self.alpha * rate
