"""The live runner's transport: one sender thread per node encodes the tiles and issues Detect calls
as gRPC futures (all nodes in parallel, several frames queued on each); replies come back on gRPC's
threads. It decides nothing about failures: it classifies a call's outcome and reports it up
through :class:`Reports` (the supervisor and the backend supply them)."""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

import hode.edge  # noqa: F401  (before grpc: picks gRPC's I/O path, see hode/edge/grpc_io.py)
import grpc

from hode.cluster.live.links import Link
from hode.edge.client import EdgeClient, outcomes, server_time_s
from hode.types import WorkItem

# gRPC codes that say "this node is gone or not answering": mark it down, re-dispatch its items.
NODE_LOST = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
             grpc.StatusCode.UNKNOWN, grpc.StatusCode.ABORTED}
# Codes that say "the request is wrong" (our bug or a config mismatch): retrying elsewhere cannot help.
FATAL = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAUTHENTICATED,
         grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNIMPLEMENTED}


@dataclass
class Reports:
    """What the transport reports up, and the two things it asks."""

    delivered: Callable[..., list]  # (link, frame_id, items, results, submitted, received) -> keys whose
    #                                 other copies are to be cancelled (the first result won)
    lost: Callable[..., None]  # (link, frame_id, items, why): these copies will not come back
    node_lost: Callable[..., str]  # (link, frame_id, code, why, timeout) -> why: a call says the node is gone
    fatal: Callable[[Link, str], None]  # a failure no other node can fix: the run fails
    call_timeout: Callable[[Link], float]  # gRPC deadline of the next Detect call to the node
    time_scale: Callable[[], float]  # the pace the workers run at


class CallBook:
    """The one-item Detect calls in flight, by item and node: once one copy of an item wins, the
    others are cancelled (they leave their nodes' queues)."""

    def __init__(self) -> None:
        self._calls: dict[tuple[int, int], dict[int, grpc.Future]] = {}
        self._lock = threading.Lock()

    def add(self, key: tuple[int, int], node: int, fut: grpc.Future) -> None:
        with self._lock:
            self._calls.setdefault(key, {})[node] = fut

    def remove(self, key: tuple[int, int], node: int, fut: grpc.Future) -> None:
        with self._lock:
            calls = self._calls.get(key)
            if calls is not None and calls.get(node) is fut:
                del calls[node]
                if not calls:
                    del self._calls[key]

    def cancel(self, key: tuple[int, int]) -> None:
        with self._lock:
            futs = list(self._calls.get(key, {}).values())
        for fut in futs:
            fut.cancel()


class Transport:
    """Sender threads and reply handling for ``links``; ``failover`` false: every failure is fatal."""

    def __init__(self, links: list[Link], reports: Reports, failover: bool) -> None:
        self.links, self.reports, self.failover = links, reports, failover
        self.calls = CallBook()
        self.closed = False

    def start(self) -> None:
        for link in self.links:
            link.sendq = queue.Queue()
            link.thread = threading.Thread(target=self._sender, args=(link,), name=f"send-{link.node.name}",
                                           daemon=True)
            link.thread.start()

    def send(self, link: Link, frame_id: int, items: list[WorkItem], submitted: float) -> None:
        link.queued(items)
        link.sendq.put((frame_id, items, submitted))

    def close(self) -> None:
        self.closed = True
        for l in self.links:
            if l.sendq is not None:
                l.sendq.put(None)

    def _sender(self, link: Link) -> None:
        while True:
            job = link.sendq.get()
            if job is None:
                return
            frame_id, items, submitted = job
            client = link.client
            if self.failover and (not link.up or client is None):  # went down after the items were queued
                link.failed(items)
                self.reports.lost(link, frame_id, items, "node down")
                continue
            try:
                req = client.request(frame_id, [(it.item_id, it.crop) for it in items], self.reports.time_scale())
            except Exception as e:
                link.failed(items)
                self.reports.fatal(link, f"cannot encode frame {frame_id}: {e}")
                continue
            sent = time.perf_counter()
            timeout = self.reports.call_timeout(link)
            try:
                fut = client.detect_future(req, timeout=timeout)
            except Exception:  # the channel was closed under us (node restarted or closing)
                link.failed(items)
                if not self.closed:
                    self.reports.lost(link, frame_id, items, "node down")
                continue
            with link.lock:
                link.calls.add(fut)
            if len(items) == 1:  # a lone item's call can be cancelled once another copy wins
                self.calls.add((frame_id, items[0].item_id), link.index, fut)
            call = _Call(link, client, frame_id, items, submitted, sent, timeout)
            fut.add_done_callback(lambda f, call=call: self._on_reply(f, call))

    def _on_reply(self, fut, c: "_Call") -> None:
        received = time.perf_counter()
        link = c.link
        if len(c.items) == 1:
            self.calls.remove((c.frame_id, c.items[0].item_id), link.index, fut)
        try:
            reply = fut.result()
        except Exception as e:  # grpc.RpcError, or cancellation (node marked down, a copy won, or close)
            link.failed(c.items, fut)
            if not self.closed:
                self._failed(fut, c, e)
            return
        results = outcomes(reply, received)
        link.answered(c.items, fut, results, reply.speed, max((received - c.sent) - server_time_s(reply), 0.0))
        for key in self.reports.delivered(link, c.frame_id, c.items, results, c.submitted, received):
            self.calls.cancel(key)  # first result wins: the other copies leave their nodes' queues

    def _failed(self, fut, c: "_Call", e: Exception) -> None:
        code = e.code() if isinstance(e, grpc.RpcError) else grpc.StatusCode.CANCELLED
        detail = e.details() if isinstance(e, grpc.RpcError) else "cancelled"
        why = f"Detect for frame {c.frame_id} failed: {code.name}: {detail}"
        if not self.failover or code in FATAL:
            self.reports.fatal(c.link, why)
            return
        # Our own cancels (a copy won, the node was marked down) and a stale client's calls say
        # nothing about the node now.
        if code in NODE_LOST and not fut.cancelled() and c.client is c.link.client:
            why = self.reports.node_lost(c.link, c.frame_id, code, why, c.timeout)
        self.reports.lost(c.link, c.frame_id, c.items, why)


@dataclass
class _Call:
    """One Detect call in flight and what its reply is matched against."""

    link: Link
    client: EdgeClient
    frame_id: int
    items: list[WorkItem]
    submitted: float
    sent: float
    timeout: float
