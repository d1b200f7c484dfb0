"""``runner=inline``: every node's detector runs in this process, one batch at a time, wall clock.

A node's queued tiles go to its detector ``batch`` at a time (0: all of them, i.e. a frame's tiles
in one call at ``in_flight: 1``); the detector predicts each crop shape as one network batch (all
tiles of a frame when ``detector.canvas`` is set). No parallelism and no device emulation: this runner measures what the detectors really cost on
this machine and is the reference the other runners' detections are compared with.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Sequence

from omegaconf import DictConfig

from hode.cluster.topology import Topology
from hode.detect.factory import make_detector
from hode.errors import check
from hode.types import Completion, NodeState, WorkItem


class InlineBackend:
    def __init__(self, topology: Topology, detector: DictConfig | None = None, batch: int = 8,
                 speed_alpha: float = 0.3) -> None:
        check(isinstance(batch, int) and not isinstance(batch, bool) and batch >= 0,
              f"runner.backend.batch must be an integer >= 0 (0: all of a node's queued tiles in one call), got {batch!r}")
        self.topology, self.batch, self.alpha = topology, batch, speed_alpha
        self._detector_cfg = detector
        self._detectors: dict[str, object] = {}
        n = len(topology)
        self._queues: list[deque] = [deque() for _ in range(n)]
        self._items = [0] * n
        self._busy = [0.0] * n
        self._speed = [0.0] * n  # items/s, moving average; 0 until measured

    def start(self) -> None:
        for node in self.topology:  # load weights up front so the first frame is not penalised
            det = self._detector(node.model)
            det.warmup()

    def _detector(self, model: str):
        if model not in self._detectors:
            self._detectors[model] = make_detector(model, self._detector_cfg)
        return self._detectors[model]

    def now(self) -> float:
        return time.perf_counter()

    def states(self) -> list[NodeState]:
        return [NodeState(n.name, n.model, n.rank, queue=len(self._queues[i]),
                          speed=self._speed[i] or 1.0, up=True,
                          measured=bool(self._speed[i]))
                for i, n in enumerate(self.topology)]

    def submit(self, frame_id: int, items: Sequence[WorkItem], assignment: Sequence[int]) -> None:
        t = self.now()
        for item, node in zip(items, assignment):
            self._queues[node].append((item, t))

    def poll(self, timeout: float | None = None) -> list[Completion]:
        """Run every queued item now, node by node, in batches; return them all."""
        done = []
        for i, q in enumerate(self._queues):
            det = self._detector(self.topology.nodes[i].model)
            while q:
                batch = [q.popleft() for _ in range(min(self.batch or len(q), len(q)))]
                start = self.now()
                dets = det.predict([item.crop for item, _ in batch])
                end = self.now()
                per = (end - start) / len(batch)
                for k, ((item, submitted), d) in enumerate(zip(batch, dets)):
                    done.append(Completion(item.frame_id, item.item_id, i, d, submitted,
                                           start + k * per, start + (k + 1) * per))
                self._items[i] += len(batch)
                self._busy[i] += end - start
                rate = len(batch) / max(end - start, 1e-9)
                self._speed[i] = rate if not self._speed[i] else (1 - self.alpha) * self._speed[i] + self.alpha * rate
        return done

    def stats(self) -> list[dict]:
        return [{"name": n.name, "model": n.model, "device": n.device, "items": self._items[i],
                 "busy_s": self._busy[i]} for i, n in enumerate(self.topology)]

    def close(self) -> None:
        self._detectors.clear()
