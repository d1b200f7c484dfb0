"""The live runner's supervisor (:mod:`hode.cluster.failover`, ``runner.failover``): a thread that
watches every node (local process alive, gRPC health check every ``health.probe_s``); a node whose
calls fail, whose process exits or whose health check fails ``fail_after`` times is marked down
(``NodeState.up`` false, so schedulers give it nothing) and its items in flight are re-dispatched to
the other nodes; items past their deadline are hedged, and the nodes holding them get a watchdog
liveness probe (:mod:`hode.cluster.live.watchdog`). A down node is re-admitted when its health check
and a one-tile Detect pass again; a local worker that died is restarted (``restart``, at most
``max_restarts`` times). It also turns replies into completions: the first copy of an item wins."""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

import grpc

from hode.cluster.failover import FailoverPolicy, FaultLog, Flight, Slowness, Tracker, item_units, pick_node
from hode.cluster.live.links import Link
from hode.cluster.live.settings import HealthSettings
from hode.cluster.live.watchdog import Watchdog
from hode.cluster.live.workers import Workers
from hode.edge.client import EdgeClient
from hode.edge.process import WorkerError
from hode.types import Completion, NodeState, WorkItem

log = logging.getLogger(__name__)


class Supervisor:
    """Failures of ``links``: down, re-dispatch, hedge, re-admit, restart. ``done`` is the backend's
    queue of completions and run-ending errors; ``send`` puts items on a node's way (the transport)."""

    def __init__(self, links: list[Link], policy: FailoverPolicy, health: HealthSettings, workers: Workers,
                 done: queue.Queue, send: Callable, emulate: bool, rpc_timeout_s: float) -> None:
        self.links, self.policy, self.health, self.workers = links, policy, health, workers
        self.done, self.send, self.emulate = done, send, emulate
        self.tracker = Tracker(policy)
        self.faults = FaultLog()
        self.slowness = Slowness(len(links))
        self.watchdog = Watchdog(self, rpc_timeout_s)
        self._parked: dict[tuple[int, int], float] = {}  # items no node could take yet -> since when
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.t0 = time.perf_counter()
        self.closed = False

    def now(self) -> float:
        return time.perf_counter()

    def time_scale(self) -> float:
        return self.workers.time_scale

    def event(self, node: str, kind: str, detail: str) -> None:
        self.faults.event(self.now() - self.t0, node, kind, detail)

    def node_states(self) -> list[NodeState]:
        now = self.now()
        return [NodeState(l.node.name, l.node.model, l.node.rank, queue=l.load.outstanding, up=l.up,
                          speed=(l.load.speed or 1.0) / self.slowness.factor(l.index, now, l.expected_s()),
                          measured=bool(l.load.speed))
                for l in self.links]

    def start(self) -> None:
        self.t0 = self.now()
        if self.policy.enabled:
            self._thread = threading.Thread(target=self._supervise, name="live-supervisor", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self.closed = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    # ----- what the transport reports ----------------------------------------------------------

    def delivered(self, link: Link, frame_id: int, items: list[WorkItem], results: list, submitted: float,
                  received: float) -> list[tuple[int, int]]:
        """Results of a call: completions for the first copy of each item (later ones are dropped);
        returns the items whose other copies are to be cancelled."""
        if self.policy.enabled:  # a reply far slower than expected for its size is evidence too
            unit_s, size = link.expected_s(), {it.item_id: item_units(it.pixels) for it in items}
            for r in results:
                self.slowness.observe(link.index, received, r.service_s / (size.get(r.item_id, 1.0) * unit_s), unit_s)
        done, losers = [], []
        for r in results:
            verdict = self.tracker.resolve((frame_id, r.item_id), link.index, ok=True)
            if verdict == "duplicate":
                self.faults.count("duplicates")
            elif verdict in ("first", "unknown"):
                done.append(Completion(frame_id, r.item_id, link.index, r.detections, submitted, r.started, r.finished))
                if verdict == "first" and (f := self.tracker.get((frame_id, r.item_id))) is not None and f.live:
                    losers.append((frame_id, r.item_id))
        if done:
            self.done.put(done)
        return losers

    def node_lost(self, link: Link, frame_id: int, code: grpc.StatusCode, why: str, timeout: float) -> str:
        """A call to ``link`` failed in a way that says the node is gone: mark it down."""
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and link.up:
            self.faults.count("watchdog")
            why = f"{self.watchdog.reason(link, timeout)} (frame {frame_id})"
        self.mark_down(link, why)
        return why

    def fatal(self, link: Link, why: str) -> None:
        self.done.put(WorkerError(f"edge node '{link.node.name}' ({link.target}): {why}"))

    def lost(self, link: Link, frame_id: int, items: list[WorkItem], why: str = "node down") -> None:
        """Copies of ``items`` on ``link`` will not come back: re-dispatch those left without a copy."""
        for it in items:
            if self.tracker.resolve((frame_id, it.item_id), link.index, ok=False) == "lost":
                f = self.tracker.get((frame_id, it.item_id))
                if f is not None:
                    self._redispatch(f, why)

    # ----- failures: down, re-dispatch, hedge, re-admit, restart -------------------------------

    def _redispatch(self, f: Flight, why: str, hedge: bool = False) -> bool:
        """Send one more copy of ``f`` to the best up node without one (a node not tried before if
        possible). Parks it when no node can take it; fails the run after ``max_attempts`` copies."""
        if len(f.tried) >= self.policy.max_attempts:
            self.done.put(WorkerError(f"item {f.item.item_id} of frame {f.frame_id} was sent {len(f.tried)} times "
                                      f"(nodes {', '.join(self.links[i].node.name for i in f.tried)}) and never "
                                      f"came back; last: {why}"))
            return False
        states = self.node_states()
        node = pick_node(states, exclude=f.live | set(f.tried))
        if node is None and not hedge:
            node = pick_node(states, exclude=f.live)  # a node tried before that is up again
        if node is None:
            if not hedge:
                self._parked.setdefault(f.key, self.now())
            return False
        self._parked.pop(f.key, None)
        link = self.links[node]
        t = self.now()
        self.tracker.copy_sent(f.key, node, self.policy.deadline(t, link.load.pending_units + item_units(f.item.pixels),
                                                                 link.expected_s()))
        self.faults.count("hedged" if hedge else "redispatched")
        self.send(link, f.frame_id, [f.item], f.submitted)
        return True

    def mark_down(self, link: Link, why: str) -> None:
        with link.lock:
            if not link.up:
                return
            link.up = False
            link.health.down_since = self.now()
            link.health.down_events += 1
            calls = list(link.calls)
        self.faults.count("nodes_down")
        self.event(link.node.name, "down", why)
        log.warning("edge node '%s' is down (%s): re-dispatching its items", link.node.name, why)
        for fut in calls:  # their callbacks re-dispatch the items
            fut.cancel()

    def _readmit(self, link: Link) -> None:
        if not self.watchdog.answers_detect(link):  # health can say SERVING while the device is held
            return
        try:
            st = link.client.status(timeout=self.health.probe_timeout_s)
            speed = st.speed
        except Exception:  # answered health, not Status: try again next round
            return
        with link.lock:
            if self.emulate and link.proc is not None and link.status.get("profile_tile_ms"):
                speed = 1000.0 / (link.status["profile_tile_ms"] * self.time_scale())  # a fresh worker assumed scale 1
            link.load.speed = speed or link.load.speed
            link.load.base_speed = max(link.load.base_speed, link.load.speed)
            link.health.probe_failures = 0
            link.up = True
        self.faults.count("readmitted")
        self.event(link.node.name, "up", "health check passed")
        log.warning("edge node '%s' passed its health check: re-admitted", link.node.name)

    def _supervise(self) -> None:
        """Every 50 ms: hedge overdue items, retry parked ones; every ``probe_s``: check each node."""
        next_probe = 0.0
        while not self._stop.wait(0.05):
            try:
                now = self.now()
                self.watchdog.probe_late_nodes(now)  # before hedging moves the overdue items' deadlines on
                if self.policy.hedge:
                    for f in self.tracker.overdue(now):
                        for i in list(f.live):  # missed a deadline: slower than the schedulers think
                            self.slowness.observe(i, now, self.policy.deadline_k, self.links[i].expected_s())
                        if not self._redispatch(f, "overdue", hedge=True):  # no other node: look again later
                            self.tracker.postpone(f.key, now + self.policy.deadline_slack_s + 0.05)
                self._retry_parked(now)
                if now >= next_probe:
                    next_probe = now + self.health.probe_s
                    for link in self.links:
                        self._check_node(link)
            except Exception:  # the supervisor must never die silently
                log.exception("live supervisor")

    def _retry_parked(self, now: float) -> None:
        for key, since in list(self._parked.items()):
            f = self.tracker.get(key)
            if f is None or f.done or f.live:
                self._parked.pop(key, None)
            elif self._redispatch(f, "no node was up"):
                pass
            elif now - since > self.health.all_down_timeout_s:
                self.done.put(WorkerError(f"item {key[1]} of frame {key[0]}: no edge node up for "
                                          f"{self.health.all_down_timeout_s:.0f} s"))
                self._parked.pop(key, None)

    def _check_node(self, link: Link) -> None:
        proc, h = link.proc, link.health
        if proc is not None and proc.proc is not None and not proc.alive():
            if link.up:
                self.mark_down(link, f"worker process exited (code {proc.proc.returncode})")
            if self.health.restart and h.restarts < self.health.max_restarts:
                h.restarts += 1
                self.faults.count("restarts")
                self.event(link.node.name, "restart", f"restart {h.restarts}")
                log.warning("restarting the worker of edge node '%s' (%d/%d)", link.node.name, h.restarts,
                            self.health.max_restarts)
                self.workers.respawn(link)
            return
        if link.client is None:
            self.workers.reconnect(link)
            return
        if h.probing:
            return
        h.probing = True
        client = link.client
        fut = client.serving_future(timeout=self.health.probe_timeout_s)
        fut.add_done_callback(lambda f, link=link, client=client: self._on_probe(f, link, client))

    def _on_probe(self, fut, link: Link, client: EdgeClient) -> None:
        from grpc_health.v1 import health_pb2

        h = link.health
        h.probing = False
        if self.closed or client is not link.client:
            return
        try:
            ok = fut.result().status == health_pb2.HealthCheckResponse.SERVING
        except Exception:
            ok = False
        if ok:
            h.probe_failures = 0
            if not link.up:
                start_readmit(link, self._readmit)
            return
        h.probe_failures += 1
        if link.up and h.probe_failures >= self.health.fail_after:
            self.mark_down(link, f"health check failed {h.probe_failures} times")


def start_readmit(link: Link, target: Callable[[Link], None]) -> None:
    """Run ``target(link)`` on its own thread unless one is running for ``link`` already."""
    with link.lock:
        if link.health.readmitting:
            return
        link.health.readmitting = True

    def run() -> None:
        try:
            target(link)
        finally:
            link.health.readmitting = False

    threading.Thread(target=run, name=f"readmit-{link.node.name}", daemon=True).start()
