"""One node as the live runner sees it: its connection (:class:`Link`), its load and counters
(:class:`LinkLoad`) and its health bookkeeping (:class:`LinkHealth`), and the node's stats row."""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from hode.cluster.failover import item_units
from hode.cluster.live_checks import node_emulated
from hode.cluster.topology import Node
from hode.edge.client import EdgeClient
from hode.edge.process import WorkerProcess
from hode.types import WorkItem


@dataclass
class LinkLoad:
    """What the node holds and has done: outstanding work, measured speed, counters for stats."""

    outstanding: int = 0
    pending_units: float = 0.0  # the outstanding items' expected cost in tiles (failover.item_units)
    speed: float = 0.0
    base_speed: float = 0.0  # items/s the node is expected to manage (start-up): deadlines use it
    items: int = 0
    busy_s: float = 0.0
    compute_s: float = 0.0
    overruns: int = 0
    overhead_s: list[float] = field(default_factory=list)  # round trip minus time inside the worker


@dataclass
class LinkHealth:
    """Whether the node takes work, and the supervisor's bookkeeping about it."""

    up: bool = True
    down_since: float = 0.0
    down_events: int = 0
    probe_failures: int = 0
    probing: bool = False  # a health check is in flight
    liveness_probe: bool = False  # a watchdog probe is in flight (supervisor.Watchdog)
    readmitting: bool = False
    restarts: int = 0


@dataclass
class Link:
    """One node: its worker (process or address), client, sender queue, and the parts above."""

    index: int
    node: Node
    proc: WorkerProcess | None = None
    client: EdgeClient | None = None
    target: str = ""
    sendq: "queue.Queue | None" = None
    thread: threading.Thread | None = None
    status: dict = field(default_factory=dict)  # the worker's Status at start-up
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: set = field(default_factory=set)  # Detect futures in flight (cancelled when the node goes down)
    load: LinkLoad = field(default_factory=LinkLoad)
    health: LinkHealth = field(default_factory=LinkHealth)

    @property
    def up(self) -> bool:
        return self.health.up

    @up.setter
    def up(self, value: bool) -> None:
        self.health.up = value

    def expected_s(self) -> float:
        """Expected service time of one item for deadlines: the measured moving average, but never
        slower than the node's start-up expectation (a node that slowed 10x gets no 10x grace)."""
        return 1.0 / max(self.load.speed, self.load.base_speed, 1e-6)

    def queued(self, items: Sequence[WorkItem]) -> None:
        """``items`` are on their way to the node."""
        with self.lock:
            self.load.outstanding += len(items)
            self.load.pending_units += sum(item_units(it.pixels) for it in items)

    def settle(self, items: Sequence[WorkItem]) -> None:
        """``items`` left the node (answered, failed, cancelled, or never sent); call under ``lock``."""
        self.load.outstanding -= len(items)
        self.load.pending_units = max(self.load.pending_units - sum(item_units(it.pixels) for it in items), 0.0)

    def failed(self, items: Sequence[WorkItem], fut=None) -> None:
        """A call (``fut``, if it was made) for ``items`` came back without results."""
        with self.lock:
            self.settle(items)
            self.calls.discard(fut)

    def answered(self, items: Sequence[WorkItem], fut, results: list, speed: float, overhead_s: float) -> None:
        """A call for ``items`` came back with ``results`` (:func:`hode.edge.client.outcomes`)."""
        with self.lock:
            self.calls.discard(fut)
            for r in results:
                self.load.busy_s += r.service_s
                self.load.compute_s += r.compute_s
                self.load.overruns += int(r.overrun)
            self.load.items += len(results)
            self.settle(items)
            self.load.speed = speed or self.load.speed
            self.load.overhead_s.append(overhead_s)

    def stats(self, emulate: bool, time_scale: float) -> dict:
        """The node's row in results.json ``nodes``."""
        load, ov = self.load, np.asarray(self.load.overhead_s) * 1000
        paced = node_emulated(self, emulate)
        return {"name": self.node.name, "model": self.node.model, "device": self.node.device, "items": load.items,
                "busy_s": load.busy_s, "compute_s": load.compute_s, "emulated": paced,
                "time_scale": time_scale if paced else 1.0, "overruns": load.overruns,
                "overrun_fraction": load.overruns / load.items if load.items else 0.0,
                "rpc_overhead_ms_p50": float(np.median(ov)) if len(ov) else None,
                "worker": "local" if self.proc is not None else self.target,
                "up": self.up, "down_events": self.health.down_events, "restarts": self.health.restarts,
                "real_tile_ms": self.status.get("compute_tile_ms"),
                "profile_tile_ms": self.status.get("profile_tile_ms")}


def status_dict(s) -> dict:
    """The fields of a worker's Status reply the runner keeps."""
    return {"speed": s.speed, "compute_tile_ms": s.compute_tile_ms, "profile_tile_ms": s.profile_tile_ms,
            "model": s.model, "device": s.device, "emulated": s.emulated, "pid": s.pid}
