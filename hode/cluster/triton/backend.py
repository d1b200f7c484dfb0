"""``runner=triton``: :class:`TritonBackend`, the Backend seam over Triton servers (KServe v2, gRPC).

Each topology node is one server (``url``), each submit splits a node's items into requests of one
tile shape (``batch`` tiles at most, no more than the model's ``max_batch_size``) sent with ``async_infer``, at most ``max_requests`` in flight per
node, so Triton's dynamic batcher sees several at once. Replies land on gRPC threads and become
completions in one queue that ``poll`` drains. Node speed is measured from round trips.

Failures follow ``runner.failover`` exactly as ``runner=live`` does, through the same
:mod:`hode.cluster.failover` parts (deadlines, hedged copies, re-dispatch, first result wins): a
request that fails with a connection error, or a node whose live/ready check fails ``fail_after``
times, marks the node down and its items go to the other nodes; a down node whose checks and a
probe tile pass again is re-admitted (:mod:`.health`).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import asdict
from typing import Sequence

from hode.cluster.failover import FailoverPolicy, FaultLog, Slowness, Tracker, by_node, item_units
from hode.cluster.queues import drain
from hode.cluster.topology import Topology
from hode.cluster.triton.client import TritonError, TritonNode, message, node_url, status_name
from hode.cluster.triton.health import Supervisor
from hode.cluster.triton.local import LocalServers, run_subdir
from hode.cluster.triton.settings import TritonSettings
from hode.errors import check
from hode.types import Completion, NodeState, WorkItem

log = logging.getLogger(__name__)

# Request failures that say "this server is gone or not answering" (else: the request is wrong).
NODE_LOST = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN", "ABORTED", "INTERNAL", ""}


class Link:
    """One node: its client, load and counters (touched under ``lock``)."""

    def __init__(self, index: int, node, client: TritonNode) -> None:
        self.index, self.node, self.client = index, node, client
        self.lock = threading.Lock()
        self.up = True
        self.waiting: deque = deque()  # requests not sent yet (the node has max_requests in flight)
        self.inflight = 0
        self.outstanding = 0
        self.pending_units = 0.0
        self.speed = self.base_speed = 0.0
        self.last_done = 0.0
        self.items = self.requests = 0
        self.busy_s = 0.0
        self.rtt_s: list[float] = []
        self.probe_failures = self.down_events = 0

    def expected_s(self) -> float:
        return 1.0 / max(self.speed, self.base_speed, 1e-6)


class TritonBackend:
    """``runner.backend``: :class:`TritonSettings` fields; ``failover``: :class:`FailoverPolicy`."""

    def __init__(self, topology: Topology, detector=None, failover: dict | FailoverPolicy | None = None,
                 **settings) -> None:
        from hode.cluster.live.settings import from_config

        self.settings = from_config(TritonSettings, settings, "runner.backend")
        self.policy = FailoverPolicy.from_config(failover)
        self.topology, self._detector = topology, detector
        self.mismatches: dict = {}
        self.links: list[Link] = []  # made at start: a topology without urls still instantiates (config checks)
        self.tracker = Tracker(self.policy)
        self.faults = FaultLog()
        self.slowness = Slowness(len(topology))
        self._done: queue.Queue = queue.Queue()
        self._send_lock = threading.Lock()
        self.supervisor = Supervisor(self)
        self._started = self._closed = False
        self.server_stats: list[dict] = []
        self.local: LocalServers | None = None  # servers this run started (nodes without url)

    # ----- the Backend seam --------------------------------------------------------------------

    def start(self) -> None:
        check(not self._started, "TritonBackend.start() called twice")
        self._started = True
        try:
            self._start()
        except BaseException:  # the servers this run started must not outlive a failed start
            self.close()
            raise

    def _start(self) -> None:
        s = self.settings
        started = self._start_local_servers()
        urls = [started.get(n.name) or node_url(n, "runner=triton") for n in self.topology]
        self.links = [Link(i, n, TritonNode(n.name, u, str(n.extra.get("triton_model", n.model))))
                      for i, (n, u) in enumerate(zip(self.topology, urls))]
        for link in self.links:  # sequential: a wrong url or model fails the start in one line
            link.client.check(s.connect_timeout_s)
            rtt = min(link.client.probe(s.connect_timeout_s) for _ in range(2))  # the first may load lazily
            link.base_speed = link.speed = 1.0 / max(rtt, 1e-6)
        self._compare_detectors()
        self.supervisor.start()
        log.info("triton cluster up: %s", ", ".join(f"{l.node.name}@{l.client.url}" for l in self.links))

    def _start_local_servers(self) -> dict[str, str]:
        """Servers on this machine for the nodes that name no url (``local_servers``)."""
        s = self.settings
        bare = [n for n in self.topology if not (n.extra.get("url") or (n.host and n.port))]
        if not (s.local_servers and bare):
            return {}
        self.local = LocalServers(bare, self._detector, run_subdir(s.log_dir, "triton"), s.torch_threads,
                                  s.start_timeout_s)
        return self.local.start()

    def _compare_detectors(self) -> None:
        """Warn when a server's detector settings differ from what this run's ``detector`` would use
        for the node's model (then runner=inline would not give the same detections)."""
        from hode.detect.factory import SHARED_KEYS, detector_config

        self.mismatches = {}
        for link in self.links:
            served = link.client.detector
            if served is None:
                continue
            try:
                mine = detector_config(link.node.model, self._detector)
            except Exception:  # a model name only the server knows
                continue
            diff = {k: (mine[k], served.get(k)) for k in SHARED_KEYS if k in mine and k != "device"
                    and served.get(k) != mine[k]}
            if diff:
                self.mismatches[link.node.name] = {k: {"run": a, "server": b} for k, (a, b) in diff.items()}
                log.warning("triton node '%s' serves %s with other detector settings than this run's: %s",
                            link.node.name, link.client.model,
                            ", ".join(f"{k} {b} (run: {a})" for k, (a, b) in diff.items()))

    def now(self) -> float:
        return time.perf_counter()

    def states(self) -> list[NodeState]:
        now = self.now()
        return [NodeState(l.node.name, l.node.model, l.node.rank, queue=l.outstanding, up=l.up,
                          speed=(l.speed or 1.0) / self.slowness.factor(l.index, now, l.expected_s()),
                          measured=l.requests > 0)
                for l in self.links]

    def submit(self, frame_id: int, items: Sequence[WorkItem], assignment: Sequence[int]) -> None:
        check(self._started and not self._closed, "TritonBackend.submit() before start() or after close()")
        t = self.now()
        for node, its in by_node(items, assignment, len(self.links)).items():
            link = self.links[node]
            unit_s, ahead = link.expected_s(), link.pending_units
            for it in its:
                ahead += item_units(it.pixels)
                self.tracker.add(frame_id, it, node, t, self.policy.deadline(t, ahead, unit_s))
            self.send(link, frame_id, its, t)

    def send(self, link: Link, frame_id: int, items: list[WorkItem], submitted: float) -> None:
        """``items`` to ``link`` in requests of one tile shape, at most ``batch`` (and the model's
        ``max_batch_size``) tiles each."""
        shapes: dict[tuple, list[WorkItem]] = {}
        for it in items:
            shapes.setdefault(it.crop.shape, []).append(it)
        cap = link.client.max_batch_size  # the server refuses larger requests
        for group in shapes.values():
            size = min(self.settings.batch or len(group), cap or len(group))
            for k in range(0, len(group), size):
                self._request(link, frame_id, group[k:k + size], submitted)

    def _request(self, link: Link, frame_id: int, items: list[WorkItem], submitted: float) -> None:
        units = sum(item_units(it.pixels) for it in items)
        with link.lock:
            link.outstanding += len(items)
            link.pending_units += units
            link.waiting.append((frame_id, items, submitted, units))
        self._pump(link)

    def _pump(self, link: Link) -> None:
        """Send waiting requests while the node has fewer than ``max_requests`` in flight (never
        blocks: it also runs on gRPC's reply threads)."""
        while True:
            with link.lock:
                if not link.waiting or (link.up and link.inflight >= self.settings.max_requests):
                    return
                frame_id, items, submitted, units = link.waiting.popleft()
                go = link.up and not self._closed
                link.inflight += go
            if not go:
                self._settle(link, items, units)
                if not self._closed:
                    self._lost(link, frame_id, items, "node down")
                continue
            sent = self.now()
            try:
                link.client.infer_async([it.crop for it in items],
                                        lambda dets, err, a=(frame_id, items, submitted, sent, units):
                                        self._reply(link, *a, dets, err), self.settings.request_timeout_s)
            except Exception as e:  # the client refused to send (closed channel)
                self._reply(link, frame_id, items, submitted, sent, units, None, e)

    def _settle(self, link: Link, items: list[WorkItem], units: float) -> None:
        with link.lock:
            link.outstanding -= len(items)
            link.pending_units = max(link.pending_units - units, 0.0)

    def _reply(self, link: Link, frame_id: int, items: list[WorkItem], submitted: float, sent: float, units: float,
               dets, err) -> None:
        received = self.now()
        with link.lock:
            link.inflight -= 1
        self._settle(link, items, units)
        self._pump(link)
        if self._closed:
            return
        if err is not None:
            code, why = status_name(err), f"request for frame {frame_id} failed: {status_name(err)}: {message(err)}"
            if not self.policy.enabled or code not in NODE_LOST:
                self._done.put(TritonError(f"{link.client.where()}: {why}"))
                return
            self.supervisor.mark_down(link, why)
            self._lost(link, frame_id, items, why)
            return
        with link.lock:  # service time: from when the node could start on it (its previous reply or now)
            start = max(sent, link.last_done)
            link.last_done = received
            rate = len(items) / max(received - start, 1e-6)
            a = self.settings.speed_alpha
            link.speed = rate if not link.requests else (1 - a) * link.speed + a * rate
            link.requests += 1
            link.items += len(items)
            link.busy_s += received - start
            link.rtt_s.append(received - sent)
        per = (received - start) / len(items)
        if self.policy.enabled:
            self.slowness.observe(link.index, received, per / link.expected_s(), link.expected_s())
        done = []
        for k, (it, d) in enumerate(zip(items, dets)):
            verdict = self.tracker.resolve((frame_id, it.item_id), link.index, ok=True)
            if verdict == "duplicate":
                self.faults.count("duplicates")
            elif verdict in ("first", "unknown"):
                done.append(Completion(frame_id, it.item_id, link.index, d, submitted, start + k * per,
                                       start + (k + 1) * per))
        if done:
            self._done.put(done)

    def _lost(self, link: Link, frame_id: int, items: list[WorkItem], why: str) -> None:
        if not self.policy.enabled:
            self._done.put(TritonError(f"{link.client.where()}: {why}"))
            return
        for it in items:
            f = self.tracker.get((frame_id, it.item_id))
            if f is None or link.index not in f.live:  # already re-dispatched when the node went down
                continue
            if self.tracker.resolve(f.key, link.index, ok=False) == "lost":
                self.supervisor.redispatch(f, why)

    def poll(self, timeout: float | None = None) -> list[Completion]:
        return drain(self._done, timeout)

    def fail(self, error: BaseException) -> None:
        """A run-ending error found off the camera's thread (raised by the next ``poll``)."""
        self._done.put(error)

    # ----- results and shutdown ----------------------------------------------------------------

    def describe(self) -> dict:
        return {"name": "triton", "clock": "wall", "emulated": False, "protocol": "KServe v2 gRPC",
                "settings": asdict(self.settings), "detector_mismatches": self.mismatches, "failover": {**asdict(self.policy), **self.faults.summary()}}

    def stats(self) -> list[dict]:
        import numpy as np

        if self.settings.statistics and self._started and not self._closed:
            self.server_stats = [l.client.statistics(self.settings.probe_timeout_s) if l.up else {} for l in self.links]
        out = []
        for i, l in enumerate(self.links):
            rtt = np.asarray(l.rtt_s) * 1000
            row = {"name": l.node.name, "model": l.node.model, "device": l.node.device, "items": l.items,
                   "busy_s": l.busy_s, "requests": l.requests, "url": l.client.url, "triton_model": l.client.model,
                   "rtt_ms_p50": float(np.median(rtt)) if len(rtt) else None, "up": l.up,
                   "down_events": l.down_events}
            if i < len(self.server_stats):
                row["server"] = self.server_stats[i]
            out.append(row)
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.supervisor.close()
        for l in self.links:
            l.client.close()
        if self.local is not None:
            self.local.close()
